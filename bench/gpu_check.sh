#!/usr/bin/env bash
# One prepared run on a lent GPU box (16 cores, no network): install the carried wheels, check the
# CUDA path, size workers/envs for the box, compare wrapper x config timing on CUDA, and profile
# with torch.profiler. Run from the repo root with the wheels in .whl/ (see README, "GPU").
#   bash bench/gpu_check.sh [SECONDS_PER_TRIAL]
set -uo pipefail
S=${1:-12}
STEPS=${GPU_CHECK_STEPS:-"sweep compare profile"}  # a rerun can do part, with BEST given
OUT=${OUT:-/tmp/gpu-out}
W=/tmp/gpu
mkdir -p "$OUT" "$W"
if ! python3 -c "import pufferlib" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nproc
python3 -c "import torch, numba, numpy, pufferlib, psutil; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0), 'numba', numba.__version__, 'numpy', numpy.__version__, 'physical cores', psutil.cpu_count(logical=False))"
python3 -c "from bench.ratios import env_sps; print(f'arena env alone, 1 core: {env_sps(5):,.0f} agent-steps/s')"

run() {  # name, then perfkit run args
  local name=$1; shift
  timeout 120 python3 -m perfkit run --seconds "$S" --out "$W/$name" "$@" > "$W/$name.txt" 2>&1 || echo "FAILED: $name"
}
if [[ $STEPS == *sweep* ]]; then
run cuda-serial-16      --device cuda --workers serial --num-envs 16 --ppo minibatch_size=16384
run cuda-w8-64          --device cuda --workers auto   --num-envs 64 --ppo minibatch_size=16384
run cuda-w8-128         --device cuda --workers auto   --num-envs 128 --ppo minibatch_size=32768
run cuda-w12-96         --device cuda --workers 12     --num-envs 96 --ppo minibatch_size=32768
run cuda-w14-112        --device cuda --workers 14     --num-envs 112 --ppo minibatch_size=32768
run cpu-w8-64           --device cpu  --workers auto   --num-envs 64 --ppo minibatch_size=16384
python3 bench/gpu_summary.py sweep "$W" | tee "$OUT/sweep.md"
BEST=$(python3 bench/gpu_summary.py best "$W")
fi
echo "best: ${BEST:=}"
if [[ $STEPS == *compare* ]]; then
# shellcheck disable=SC2086
timeout 300 python3 -m perfkit compare --vary wrapper=getattribute,getattr --vary env-config=per-episode,deferred \
  --trials 2 --seconds "$S" --out "$W/compare" $BEST 2>&1 | tail -40 || echo "FAILED: compare"
cp "$W/compare/sps.md" "$OUT/compare-sps.md" 2>/dev/null
fi
# shellcheck disable=SC2086
timeout 200 python3 -m perfkit profile --with torch --seconds "$S" --out "$W/profile" $BEST 2>&1 | tail -12 || echo "FAILED: profile"
cp "$W/profile/torch/torch-ops-0.txt" "$OUT/torch-ops.txt" 2>/dev/null
cp "$W/profile/torch/torch-trace-0.json.gz" "$OUT/torch-trace.json.gz" 2>/dev/null
python3 bench/gpu_summary.py trace "$W/profile" | tee "$OUT/trace.md"
