#!/usr/bin/env bash
# Learning per preset on a lent GPU box: one longer PPO run per arena preset, on CUDA, sized as
# bench/gpu_check.sh found best. Copies the tables, curves and JSON to $OUT.
#   bash bench/gpu_learning.sh [SECONDS_PER_PRESET]
set -uo pipefail
S=${1:-60}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ! python3 -c "import pufferlib" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
timeout 500 python3 -m perfkit compare --vary preset=basic_easy_shaped,make_arena,fixed_recipe --trials 1 \
  --seconds "$S" --fix device=cuda --fix workers=14 --num-envs 112 --ppo minibatch_size=32768 \
  --out /tmp/learn 2>&1 | tail -30
cp /tmp/learn/sps.md /tmp/learn/learning.png /tmp/learn/sps.json "$OUT"/ 2>/dev/null
