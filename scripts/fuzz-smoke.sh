#!/usr/bin/env bash
# Short fuzz run of every target (list parsers, TFRecord reader, sampler, FFmpeg over whole
# files) from the committed seed corpora: `make fuzz-smoke` (CI runs it when a nightly
# toolchain is present). Each corpus holds the inputs of bugs found earlier, so this replays
# them too. A longer run with AddressSanitizer, as done for each target before a release:
#   cargo +nightly fuzz run -s address TARGET /tmp/new corpus/TARGET -- -max_total_time=300
#   SECONDS_PER_TARGET=300 scripts/fuzz-smoke.sh   # a longer run
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${SECONDS_PER_TARGET:-20}
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz-smoke: no nightly toolchain (rustup toolchain install nightly); not run"
    exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
passed=0
for t in list_parsers tfrecord_reader sampler decode_container; do
    scratch=$(mktemp -d)
    # New inputs go to the scratch folder; the committed corpus is only read.
    cargo +nightly fuzz run -s none --dev "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 2>&1 | tail -n 3
    rm -rf "$scratch"
    passed=$((passed + 1))
done
echo "test result: ok. $passed passed; 0 failed; (fuzz smoke, ${secs} s per target)"
