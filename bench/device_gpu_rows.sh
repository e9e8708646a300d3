#!/usr/bin/env bash
# The GPU rows of `perfkit explain`, measured on a machine with one CUDA GPU and no network.
# Expects the wheels of what that machine lacks in .whl/ (gymnasium, farama-notifications, py-spy,
# holistictraceanalysis, plotly, pydot) and pufferlib's pure-Python package in .gpusite/ (its
# PyPI release pins an older torch than such machines carry). Writes logs and tarballs to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpusite:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import torch, hta, pufferlib.vector; print('torch', torch.__version__, torch.cuda.is_available())"; py-spy --version; nproc; } 2>&1 | tee "$OUT/env.log"
# 1. Faults against their twins, with the GPU rows.
timeout 270 python3 bench/explain_faults.py --faults host-sync,obs-copy --runs 1 --device cuda --max-minutes 0.75 \
  --min-seconds 15 --overhead-pairs 0 --keep /tmp/ef 2>&1 | tee "$OUT/faults.log"
# 2. The investigation replayed on the GPU.
timeout 150 python3 -m perfkit explain --vary release=before,after --device cuda --max-minutes 1 --min-seconds 15 \
  --out /tmp/rel --force 2>&1 | tee "$OUT/release.log"
# 3. A small trace pair for perfkit's tests (16-step rollouts, 2 arenas).
timeout 75 python3 -m perfkit explain --vary fault=none,host-sync --device cuda --ppo num_steps=16 --num-envs 2 \
  --max-minutes 0.2 --min-seconds 5 --out /tmp/fix --force 2>&1 | tee "$OUT/fixture.log"
for d in ef rel fix; do
  [ -d /tmp/$d ] && tar czf "$OUT/$d.tgz" -C /tmp --exclude='*.folded' --exclude='*.svg' "$d"
done
ls -la "$OUT"
