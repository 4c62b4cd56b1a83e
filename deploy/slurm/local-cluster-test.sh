#!/usr/bin/env bash
# A real Slurm array job over the bundled samples on a one-node cluster on this machine
# (slurmctld + slurmd + munge on localhost), checked with `vidfeat status` and `vidfeat verify`.
# Needs root (Debian 12: installs slurm-wlm and munge when missing). `make test-slurm`.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
bin=${VIDFEAT:-$repo/target/release/vidfeat}
[ -x "$bin" ] || cargo build --release
[ "$(id -u)" = 0 ] || { echo "needs root (daemons, /run/munge)"; exit 1; }
command -v slurmctld >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null

work=$(mktemp -d /tmp/vidfeat-slurm.XXXXXX)
host=$(hostname)
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=vidfeattest
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$work/state" "$work/spool" /run/munge
chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || mungekey -c
pgrep -x munged >/dev/null || su -s /bin/sh munge -c munged || munged --force
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
setsid slurmctld -D -f "$SLURM_CONF" >"$work/ctld.out" 2>&1 </dev/null & pids+=($!)
sleep 2
setsid slurmd -D -f "$SLURM_CONF" >"$work/d.out" 2>&1 </dev/null & pids+=($!)
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done

ds=$work/ds
"$bin" plan tests/compat/list.csv --vocab kinetics-400 --shards 4 --max-frames 3 --out "$ds" >/dev/null
mkdir -p "$ds/logs"
job=$(cd "$ds" && VIDFEAT=$bin sbatch --parsable --array=0-1 --cpus-per-task=1 --mem=1000 \
    --output="$ds/logs/%A_%a.out" --export=ALL "$repo/deploy/slurm/vidfeat-array.sbatch" "$ds")
echo "submitted array job $job"
for _ in $(seq 300); do [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break; sleep 1; done
cat "$ds"/logs/*.out
"$bin" status "$ds"
"$bin" status "$ds" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["complete"] and s["videos_ok"] == 11, s; print("slurm array: complete,", s["videos_ok"], "videos")'
"$bin" verify "$ds"
echo "test result: ok. 1 passed; 0 failed; (slurm array job)"
rm -rf "$work"
