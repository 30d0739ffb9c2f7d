#!/usr/bin/env bash
# The GPU tier's device check, one command on a lent GPU machine (one H100 or H200, no network, no Ray):
#
#     bash benchmarks/gpu_tier.sh            # with the wheels of benchmarks/gpu_wheels.sh carried as .whl/
#
# Installs the carried wheels (what the machine's image lacks: pydantic, pytorch-optimizer ...) into /tmp/site, then
# runs benchmarks/gpu_tier.py, which trains the baselines' GPU configurations on synthetic stand-ins of their
# workloads through the local executor and writes gpu_tier.json, gpu_tier.txt and the result files to $OUT (the
# device tool's output folder; default ./gpu_tier_out). Extra arguments go to gpu_tier.py (--deadline, --only).
# Within 8 minutes: gpu_tier.py stops starting configurations after --deadline (420 s), and this stops it at 470 s.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_tier_out}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 BENCH_CACHE="${BENCH_CACHE:-/tmp/bench-cache}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv \
    >"$OUT/nvidia-smi.csv" 2>&1 || true
timeout 470 python3 benchmarks/gpu_tier.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_tier.log"
