#!/usr/bin/env bash
# One-shot codec training on a lent GPU (issue 12, item 4): WALL_S seconds of steps (default
# 420), then the weights come back for evaluation on the CPU. Nothing here runs unless a session
# has a device.
#
# Prepare here, once per session (both paths are git-ignored and travel with `carry`):
#   python -m codec.pack ../shared/data/train runs/pack.npz          # ~33 MiB, never Kodak
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .whl pytorch-msssim==1.0.0              # not in the device image
# Then, through the device tool:
#   run(command="bash tools/gpu_train.sh", carry=["runs/pack.npz", ".whl"], timeout_s=600)
#
# Arguments: pairs NAME "EXTRA ARGS", each a run; the runs share the GPU side by side (the model
# is small, one run leaves most of an H200 idle). Without arguments: v7's recipe (model card)
# from INIT (default: the default release) at two rates, "a" at v7's 2.5e-4 and "b" at 5e-4.
# A new model from scratch instead:
#   bash tools/gpu_train.sh scratch '--config {"latent_norm":true} --encoder-grad full'
# The learning rate decays with the clock (--lr-clock wall): the speed there is not known here.
# Back come, per run, OUT/NAME/avg.pt (the mean of the last four exports, 500 steps apart, fp16),
# the newest export and log.jsonl, and one console.log: 7 files for two runs, under the 8 a call
# returns. Evaluate with `satlink codec train validate` and `satlink codec eval --model`.
# DEVICE=cpu WALL_S=20 (and OUT set) rehearses the whole script here; PACK names another pack
# (tests/test_gpu_script.py does that with a tiny model).
set -euo pipefail
OUT=${OUT:?run this through the device tool, which sets OUT}
if [ $(($# % 2)) -ne 0 ]; then
    echo "gpu_train.sh: arguments come in pairs NAME \"EXTRA ARGS\"; got $# words" >&2
    exit 2
fi
DEVICE=${DEVICE:-cuda}
WALL_S=${WALL_S:-420}
PACK=${PACK:-runs/pack.npz}
SITE=${SITE:-/tmp/site}  # where carried wheels are installed
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH="$PWD:$SITE"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
console="$OUT/console.log"
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi") >"$console"
if [ $# -eq 0 ]; then
    INIT=${INIT:-codec/weights/$(python3 -c 'from codec.zoo import DEFAULT_MODEL; print(DEFAULT_MODEL)').pt}
    recipe="--init-weights $INIT --freeze codebooks --msssim-weight 0.97 --commit-weight 0.1"
    recipe="$recipe --stage-weight-p 0.35 --lr-floor 0.1"
    set -- a "$recipe --lr 2.5e-4 --seed 101" b "$recipe --lr 5e-4 --seed 102"
fi
names=()
pids=()
while [ $# -ge 2 ]; do
    name=$1 extra=$2
    shift 2
    mkdir -p "$OUT/$name"
    # shellcheck disable=SC2086  # EXTRA is a list of arguments on purpose
    python3 -m codec.train --data "$PACK" --out "$OUT/$name" --device "$DEVICE" \
        --bf16 true --batch-size 32 --crop-px 256 --steps 10000000 --warmup-steps 200 \
        --max-wall-s "$WALL_S" --lr-clock wall --ckpt-every 10000000 --export-every 500 \
        --export-keep 4 --val-every 1000 --progress false --channels-last true \
        --depth-sampling one --threads 4 $extra >"$OUT/$name.txt" 2>&1 &
    names+=("$name")
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=$?
done
for name in "${names[@]}"; do
    run="$OUT/$name"
    { echo "== $name"; cat "$OUT/$name.txt"; } >>"$console"
    rm -f "$OUT/$name.txt" "$run/last.ckpt"
    mapfile -t exports < <(ls "$run"/step_*.pt 2>/dev/null)
    if [ ${#exports[@]} -gt 0 ]; then
        python3 -m codec.train average "$run/avg.pt" "${exports[@]}" --half >>"$console" 2>&1 ||
            status=$?
        # The newest export stays beside the average; the older ones are in it.
        for f in "${exports[@]:0:${#exports[@]}-1}"; do rm -f "$f"; done
    fi
done
cat "$console"
exit "$status"
