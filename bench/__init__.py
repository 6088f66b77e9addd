"""Benchmarks, outside the installed packages: `python -m bench.data` (make bench-data),
`python -m bench.train` (make bench-train), `bench/gpu.sh` (make bench-gpu). Each writes its last
numbers to results/bench/; docs/benchmarks.md and docs/gpus.md are generated from those files (bench.readme)."""
from common import quiet

quiet.set_defaults()  # TensorFlow's environment defaults, before anything imports it
