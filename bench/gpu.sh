#!/usr/bin/env bash
# GPU training speed of the paper's baseline (§IV.B: DenseNet121, 224×224, batch 32) and what the
# full Table I would cost on this machine. One prepared script, at most ~8 minutes:
#   1. a synthetic ChestX-ray14 (data_prep.phantom, 1024² PNGs) → TFRecords at 224 (data_prep.build)
#   2. bench.train part (1) three times: fp32, mixed precision (mixed_float16), XLA (jit_compile);
#      each gives Model.fit img/s through the TFRecord pipeline and on the same images in memory
#   3. results/bench/gpu_<device>.json and the Table I estimate (4 runs × 50 epochs × train images)
#
#   bash bench/gpu.sh            # on a GPU machine with this repo and its .venv (tensorflow[and-cuda])
#   bash bench/gpu.sh --tiny     # dry check on a CPU: tiny model, 32², a few steps (~1-2 minutes)
#
# Env: PY (python, default .venv/bin/python), WORK (scratch folder, default /tmp/gpu_bench),
#      STEPS (timed steps per measurement, default 50), IMAGES (phantom images, default 480).
set -euo pipefail
cd "$(dirname "$0")/.."

TINY=0
[[ "${1:-}" == "--tiny" ]] && TINY=1
PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
WORK=${WORK:-/tmp/gpu_bench}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2} PYTHONUNBUFFERED=1
WORKERS=$(nproc)

if (( TINY )); then
  MODEL=tiny SIZE=32 BATCH=8 STEPS=${STEPS:-4} WARMUP=1 IMAGES=${IMAGES:-160} REPEATS=1
  DEVICE=cpu-dry-check
else
  # §IV.B: DenseNet121 baseline, "downscaled the images to 224×224", "32 minibatch size".
  MODEL=densenet121 SIZE=224 BATCH=32 STEPS=${STEPS:-50} WARMUP=3 IMAGES=${IMAGES:-480} REPEATS=2
  DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
  if [[ -z "$DEVICE" ]]; then
    echo "error: no NVIDIA GPU (nvidia-smi failed); use --tiny for a CPU dry check" >&2
    exit 1
  fi
  "$PY" -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" || {
    echo "error: TensorFlow sees no GPU (install tensorflow[and-cuda] in $PY's environment)" >&2
    exit 1
  }
fi
TAG=$(echo "$DEVICE" | tr -cs 'A-Za-z0-9' '_' | sed 's/_*$//')
OUT=results/bench/gpu_${TAG}.json
(( TINY )) && OUT=$WORK/gpu_${TAG}.json  # a dry check is not a result
mkdir -p "$WORK" "$(dirname "$OUT")"
START=$SECONDS

# 1. Synthetic data: labelled with the committed sample of real NIH rows (no download needed).
# The phantom holds few images; the pipeline repeats them (steps_per_epoch), which is what we time.
if [[ ! -f "$WORK/shards_$SIZE/manifest.json" ]]; then
  "$PY" -m data_prep.phantom --labels tests/data/Data_Entry_2017_v2020_sample.csv --out "$WORK/phantom" \
      --images "$IMAGES" --seed 0 --workers "$WORKERS"
  "$PY" -m data_prep.build --data-dir "$WORK/phantom" --out "$WORK/shards_$SIZE" --split paper \
      --size "$SIZE" --workers "$WORKERS" --seed 0
fi
echo "data ready after $((SECONDS - START)) s"

# 2. One process per mode: the mixed-precision policy is global, and XLA compiles per process.
# No --cache: every step reads and decodes TFRecords, as the paper preset does on 78k images.
run_mode() {  # name, extra flags
  local name=$1; shift
  "$PY" -m bench.train --data "$WORK/shards_$SIZE" --skip-input --out "$WORK/$name.json" \
      --model "$MODEL" --image-size "$SIZE" --batch-size "$BATCH" --steps "$STEPS" \
      --warmup "$WARMUP" --repeats "$REPEATS" "$@"
}
run_mode fp32
run_mode mixed --mixed-precision
run_mode xla --jit-compile
echo "measured after $((SECONDS - START)) s"

# 3. Merge, and estimate Table I: 4 runs (VGG16, ResNet50, DenseNet121 with Eq. (1); DenseNet121
# with Eq. (2)) × 50 epochs (§IV.B) × the paper split's train images. All four are priced at
# DenseNet121's speed (VGG16 and ResNet50 are of the same order on a GPU); the per-epoch
# validation pass (~11k images, inference only) adds roughly 5%, not included.
"$PY" - "$WORK" "$OUT" "$DEVICE" "$TINY" <<'EOF'
import json, sys
from pathlib import Path

work, out, device, tiny = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
modes = {m: json.loads((work / f"{m}.json").read_text()) for m in ("fp32", "mixed", "xla")}
train_images = 78_500  # ~7/10 of ChestX-ray14's 112,120 images (§IV.A 7:1:2, cut by patient)
runs, epochs = 4, 50  # Table I's four trained columns; §IV.B "50 epochs"
result = {"device": device, "dry_check": tiny, "machine": modes["fp32"]["machine"],
          "config": modes["fp32"]["config"], "modes": {}, "table1_estimate": {}}
for name, r in modes.items():
    t = r["training"]
    hours = runs * epochs * train_images / t["pipeline_img_s"] / 3600
    result["modes"][name] = t
    result["table1_estimate"][name] = {"hours": hours, "runs": runs, "epochs": epochs,
                                       "train_images": train_images}
    print(f"{name:5s}: pipeline {t['pipeline_img_s']:8.1f} img/s, in memory {t['in_memory_img_s']:8.1f} "
          f"img/s (ratio {t['ratio']:.3f}); Table I (4 runs x 50 epochs x {train_images} images) "
          f"~ {hours:.1f} h")
out.write_text(json.dumps(result, indent=2) + "\n")
print(f"wrote {out}")
EOF
echo "total $((SECONDS - START)) s"
