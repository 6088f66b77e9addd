#!/usr/bin/env bash
# The device benchmark without TensorFlow (bench/device.py) in one command, for a GPU machine that
# has JAX and NumPy but no TensorFlow and no Keras (the nvidia-h200 machine: bench/README.md).
#   1. if `import keras` fails and wheels were carried in .whl/ (keras, namex, optree), install
#      them into /tmp/site (--no-index: that machine reaches no registry) and put it on PYTHONPATH
#   2. KERAS_BACKEND=jax python -m bench.device "$@"  → results/bench/gpu_<device>_jax.json
#
#   bash bench/device.sh                          # on the GPU machine (≤ 330 s of measurements)
#   bash bench/device.sh --tiny --out FILE.json   # CPU dry run of the same path (~1 min)
#
# Env: PY (python, default .venv/bin/python, else python3), SITE (wheel target, default /tmp/site).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
SITE=${SITE:-/tmp/site}
# Before any import of Keras: without it Keras 3 starts TensorFlow, which is not there.
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1

if ! "$PY" -c "import keras" 2>/dev/null; then
  shopt -s nullglob
  wheels=(.whl/*.whl)
  if (( ${#wheels[@]} == 0 )); then
    echo "error: $PY cannot import keras and no wheels are in .whl/ (see bench/README.md)" >&2
    exit 1
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
  "$PY" -c "import keras" || { echo "error: keras installed into $SITE but does not import" >&2; exit 1; }
fi
exec "$PY" -m bench.device "$@"
