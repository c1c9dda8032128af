#!/usr/bin/env bash
# One-shot codec training on a lent GPU (issue 12, item 4): about 8 minutes of steps, then the
# weights come back for evaluation on the CPU. Nothing here runs unless a session has a device.
#
# Prepare here, once per session (both paths are git-ignored and travel with `carry`):
#   python -m codec.pack ../shared/data/train runs/pack.npz          # ~35 MiB, never Kodak
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .whl pytorch-msssim==1.0.0              # not in the device image
# Then, through the device tool:
#   run(command="bash tools/gpu_train.sh", carry=["runs/pack.npz", ".whl"], timeout_s=600)
# Extra arguments go to codec.train (e.g. --init-weights codec/weights/<file>.pt).
# Back here: the newest three exports ($OUT/run/step_*.pt, 1,000 steps apart) and the logs;
# evaluate with `satlink codec eval --model <file>.pt` (docs/BENCHMARKS.md, the model card).
set -euo pipefail
OUT=${OUT:?run this through the device tool, which sets OUT}
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD:/tmp/site"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
python3 -m codec.train --data runs/pack.npz --out "$OUT/run" --device cuda --bf16 true \
    --batch-size 32 --crop-px 256 --steps 20000 --warmup-steps 500 --max-wall-s 480 \
    --ckpt-every 1000000 --export-every 1000 --export-keep 3 --val-every 1000 --progress false \
    --channels-last true --depth-sampling one --encoder-grad full \
    --config '{"latent_norm": true}' "$@" 2>&1 | tee "$OUT/train.log"
# The final checkpoint (weights and optimizer, ~35 MiB) is over what comes back; drop it.
rm -f "$OUT/run/last.ckpt"
