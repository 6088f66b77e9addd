#!/usr/bin/env bash
# The GPU benchmark in one command (`make bench-gpu`): what the paper's runs (§IV.B: 224², batch
# 32) cost on this machine, and the hours of the whole Table I. At most ~7.5 minutes in all
# (TOTAL_S), whatever fails: every measurement runs in a process of its own under one deadline.
#   1. (--install) on a machine where nvidia-smi finds a GPU but TensorFlow sees none: the `gpu`
#      extra of setup.cfg (tensorflow[and-cuda]) into $PY's environment
#   2. a synthetic ChestX-ray14 (data_prep.phantom, labelled with the committed sample of real NIH
#      rows: no download) → TFRecords at 224² (data_prep.build)
#   3. python -m bench.gpu: input pipeline alone; per backbone fp32, mixed precision, mixed
#      precision + XLA, validation; --distribute mirrored with 2+ GPUs; the Table I projection
#      → results/bench/gpu_<device>.json, then README's benchmark tables (python -m bench.readme)
#
#   bash bench/gpu.sh [--install]   # on a GPU machine, from the repository with its .venv
#   bash bench/gpu.sh --tiny        # CPU dry run of every path: tiny CNN, 32², a few steps (< 1 min)
#
# Env: PY (python, default .venv/bin/python), WORK (scratch, default /tmp/gpu_bench), IMAGES
#      (phantom images, default 480), TOTAL_S (seconds for the whole script, default 450),
#      SHARDS (an existing TFRecord folder: skip step 2), STEPS (fit steps per epoch, default 25).
set -euo pipefail
cd "$(dirname "$0")/.."

TINY=0 INSTALL=0
for arg in "$@"; do
  case $arg in
    --tiny) TINY=1 ;;
    --install) INSTALL=1 ;;
    *) echo "error: unknown option $arg (expected --tiny or --install)" >&2; exit 2 ;;
  esac
done
PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
WORK=${WORK:-/tmp/gpu_bench}
TOTAL_S=${TOTAL_S:-450}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2} PYTHONUNBUFFERED=1
WORKERS=$(nproc)
START=$SECONDS
tf_sees_gpu() { "$PY" -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" 2>/dev/null; }

if (( TINY )); then
  SIZE=32 IMAGES=${IMAGES:-160} STEPS=${STEPS:-3} EPOCHS=1 DEVICE=cpu-dry-check
else
  SIZE=224 IMAGES=${IMAGES:-480} STEPS=${STEPS:-25} EPOCHS=2  # §IV.B "downscaled the images to 224×224"
  DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
  if [[ -z "$DEVICE" ]]; then
    echo "error: no NVIDIA GPU (nvidia-smi found none); use --tiny for a CPU dry run" >&2
    exit 1
  fi
  if ! tf_sees_gpu && (( INSTALL )); then
    echo "installing the gpu extra (tensorflow[and-cuda]) into $PY's environment ..."
    "$PY" -m pip install -q -e ".[gpu]" || { echo "error: pip could not install .[gpu] (offline?)" >&2; exit 1; }
  fi
  tf_sees_gpu || {
    echo "error: TensorFlow sees no GPU although nvidia-smi shows '$DEVICE': install the gpu extra (bash bench/gpu.sh --install, or $PY -m pip install -e '.[gpu]')" >&2
    exit 1
  }
  START=$SECONDS  # the budget is the benchmark's; an installation is not part of it
fi
TAG=$(echo "$DEVICE" | tr -cs 'A-Za-z0-9' '_' | sed 's/_*$//')
OUT=results/bench/gpu_${TAG}.json
(( TINY )) && OUT=$WORK/gpu_${TAG}.json  # a dry run is not a result
mkdir -p "$WORK"

if [[ -n "${SHARDS:-}" ]]; then
  DATA=$SHARDS
else
  DATA=$WORK/shards_$SIZE
  if [[ ! -f "$DATA/manifest.json" ]]; then
    "$PY" -m data_prep.phantom --labels tests/data/Data_Entry_2017_v2020_sample.csv --out "$WORK/phantom" \
        --images "$IMAGES" --seed 0 --workers "$WORKERS"
    "$PY" -m data_prep.build --data-dir "$WORK/phantom" --out "$DATA" --split-method paper --size "$SIZE" \
        --workers "$WORKERS" --seed 0
  fi
fi
echo "data ready after $((SECONDS - START)) s"

# What is left of TOTAL_S, less ~15 s for TensorFlow-free bookkeeping, is the measurements' budget.
BUDGET=$((TOTAL_S - (SECONDS - START) - 15))
"$PY" -m bench.gpu --data "$DATA" --out "$OUT" --device "$DEVICE" --work "$WORK/rows" \
    --budget-s "$BUDGET" --steps "$STEPS" --epochs "$EPOCHS" $( (( TINY )) && echo --tiny )
(( TINY )) || "$PY" -m bench.readme  # README's GPU numbers from the new JSON
echo "total $((SECONDS - START)) s"
