# Targets are calls of the package CLIs (python -m data_prep.* / reproduce.* / bench.*), one line
# each; `make demo` is several such lines. `make` alone prints `make help`.
# `make demo` and `make test` work on a fresh clone with Python 3.11: .venv is made on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# One target at a time even under make -j: each run already uses every core.
.NOTPARALLEL:
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# oneDNN: off by default on AMD CPUs, on is faster here; must be set before TensorFlow loads (common.quiet sets both defaults too).
export TF_ENABLE_ONEDNN_OPTS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

LABELS ?= data/labels/Data_Entry_2017_v2020.csv.gz
EXPERT_LABELS ?= $(dir $(LABELS))google2019_nih-chest-xray-labels.csv.gz
PHANTOM_DIR ?= data/phantom
PHANTOM_IMAGES ?= 1200
DEMO_SHARDS ?= data/phantom_tfrecords
DEMO_RUNS ?= results/demo/runs
DEMO_OUT ?= results/demo
# The committed copies that make demo / make rehearse compare their (untracked) output with.
DEMO_REFERENCE ?= results/reference/demo
REHEARSE_REFERENCE ?= results/reference/rehearsal
DATA_DIR ?= data/nih
SHARDS ?= data/nih_tfrecords
RUNS ?= runs
RESULTS ?= results
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
SEED ?= 0
SPLIT_METHOD ?= paper
PAPER_KEYS := vgg16_wce resnet50_wce densenet121_wce densenet121_ewl
# make paper SEEDS="0 1 2" GPUS=0,1,2,3: one run per key and seed (RUNS/<key>_s<seed>), one run per
# GPU at a time (python -m reproduce.runs); unset: one run per key (RUNS/<key>), one after another.
# table1, figure1, expert, localize and predict read the same RUNS/<key>[_s<seed>] folders.
SEEDS ?=
GPUS ?=
# make paper TRAIN_OPTS="--mixed-precision": reproduce.train options for every run (after `--`).
TRAIN_OPTS ?=
RUNS_OPTS = $(if $(SEEDS),--seeds $(SEEDS)) $(if $(GPUS),--gpus $(GPUS))
# $(call RUN_ARGS,keys,runs folder,seeds): the report's --runs KEY=RUN for every key (and seed).
RUN_ARGS = $(foreach k,$(1),$(if $(3),$(foreach s,$(3),--runs $(k)=$(2)/$(k)_s$(s)),--runs $(k)=$(2)/$(k)))
# $(call RUN_DIRS,keys,runs folder,seeds): the run folders alone.
RUN_DIRS = $(foreach k,$(1),$(if $(3),$(foreach s,$(3),$(2)/$(k)_s$(s)),$(2)/$(k)))
DEMO_SEED_KEYS := densenet121_wce densenet121_ewl
DEMO_SEEDS ?= 0 1 2
# Grad-CAM localization against the radiologists' boxes (python -m reproduce.localize) and
# predictions on new images (python -m reproduce.predict): make localize, make predict IMAGES=...
LOCALIZE_KEYS := densenet121_wce densenet121_ewl
BBOX ?= $(dir $(LABELS))BBox_List_2017.csv.gz
RUN ?= $(RUNS)/densenet121_ewl$(if $(SEEDS),_s$(firstword $(SEEDS)))
IMAGES ?=
PREDICT_OUT ?= predictions
# make demo's predict examples: four images of the phantom's test split, rows 1, 61, 121, 181 (read when run)
DEMO_PREDICT_IMAGES = $(addprefix $(PHANTOM_DIR)/images/,$(shell sed -n '2p;62p;122p;182p' $(DEMO_SHARDS)/splits/test.csv | cut -d, -f1))

.PHONY: help setup test test-slow labels weights smoke smoke-shards phantom demo-shards demo-train demo-evaluate demo paper-shards paper-train \
        paper-evaluate paper table1 figure1 expert demo-seeds-runs demo-seeds ablation bench bench-data \
        bench-train bench-gpu bench-device bench-backends bench-times clean-demo clean-smoke clean-rehearsal \
        localize predict demo-reference smoke-shards demo-seeds-runs operating-points calibration subgroups

$(VENV)/.setup-stamp: setup.cfg pyproject.toml
	@echo "setting up $(VENV): this package and its dependencies from PyPI (network; ~3.1 GB; a few minutes, once)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip && $(PY) -m pip install --progress-bar on -e '.[test]'
	touch $@

help:  ## this list
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/  make \1\t\2/' | expand -t 24; grep -hE '^#: ' $(MAKEFILE_LIST) | sed 's/^#: /  /'

#: Variables (make TARGET VAR=value; docs/commands.md):
#:   PYTHON=python3.11      the interpreter that makes .venv
#:   DATA_DIR=data/nih      your NIH ChestX-ray14 download (docs/real-data.md)
#:   SHARDS=data/nih_tfrecords  its TFRecords (make paper-shards)
#:   SPLIT_METHOD=paper     paper (7:1:2 by patient, §IV.A) or official (NIH's lists in DATA_DIR)
#:   SEED=0                 the seed of the data targets: phantom, patient split, record order
#:   RUNS=runs              the run folders of make paper
#:   RESULTS=results        Table I, Figure 1, expert and localization outputs
#:   WORKERS=<cores>        data-prep processes (default: this machine's core count)
#:   SEEDS="0 1 2"          several training seeds per run (RUNS/<key>_s<seed>)
#:   GPUS=0,1,2,3           one run per GPU at a time (docs/gpus.md)
#:   TRAIN_OPTS="..."       extra reproduce.train options for every paper run
#:   RUN=runs/densenet121_ewl  IMAGES="files or folders"  PREDICT_OUT=predictions   make predict's
#:   LABELS=data/labels/Data_Entry_2017_v2020.csv.gz  EXPERT_LABELS=…  BBOX=…  the label files
#:                          (make subgroups reads age, sex and view from LABELS)
#:   PHANTOM_DIR=data/phantom PHANTOM_IMAGES=1200 DEMO_SHARDS=data/phantom_tfrecords
#:     DEMO_RUNS=results/demo/runs DEMO_OUT=results/demo DEMO_SEEDS="0 1 2"   make demo's
#:   SMOKE_PHANTOM=data/smoke_phantom SMOKE_SHARDS=data/smoke_tfrecords SMOKE_OUT=results/smoke
#:   REHEARSE_IMAGES=240 REHEARSE_EPOCHS=2 REHEARSE_STEPS=1 REHEARSE_PHANTOM=data/rehearsal_phantom
#:     REHEARSE_SHARDS=data/rehearsal_tfrecords REHEARSE_RUNS=… REHEARSE_OUT=results/rehearsal
#:   DEMO_REFERENCE=results/reference/demo REHEARSE_REFERENCE=…   the committed references

setup: $(VENV)/.setup-stamp  ## make .venv: the package and its dependencies (network, once)

# Two pytest workers (pytest-xdist): most tests wait on subprocesses or run single-threaded Python.
test: setup  ## the test suite without its slow tier (docs/testing.md)
	$(PY) -m pytest -q -n 2 -m "not slow"

test-slow: setup  ## the slow tier: real backbones, several processes, crash and resume (CI runs both)
	$(PY) -m pytest -q -n 2 -m slow

labels: setup  ## the real ChestX-ray14 label files into data/labels (network once, or ../shared)
	$(PY) -m data_prep.fetch_labels --out $(dir $(LABELS))

weights: setup  ## the three ImageNet notop files into the Keras cache (network; docs/real-data.md)
	$(PY) -m reproduce.weights

phantom: labels  ## the synthetic ChestX-ray14 of the demo (NIH layout, real label rows)
	$(PY) -m data_prep.phantom --labels $(LABELS) --out $(PHANTOM_DIR) --images $(PHANTOM_IMAGES) --seed $(SEED) --workers $(WORKERS) --expert-labels $(EXPERT_LABELS)

demo-shards: phantom  ## its TFRecords at 224²
	$(PY) -m data_prep.build --data-dir $(PHANTOM_DIR) --out $(DEMO_SHARDS) --split-method paper --size 224 --workers $(WORKERS) --seed $(SEED)

# Targets that only read the demo shards build them when missing, and otherwise never redraw the
# phantom (make ablation and make demo-seeds can then run side by side in one clone).
$(DEMO_SHARDS)/manifest.json:
	$(MAKE) demo-shards

demo-train: $(DEMO_SHARDS)/manifest.json  ## the four Table I runs at the demo preset
	for key in $(PAPER_KEYS); do $(PY) -m reproduce.train --data $(DEMO_SHARDS) --model $${key%_*} --loss $${key##*_} --preset demo --out $(DEMO_RUNS)/$$key || exit 1; done

demo-evaluate: $(DEMO_SHARDS)/manifest.json  ## their validation and test predictions (trains nothing)
	$(PY) -m reproduce.evaluate --runs $(foreach k,$(PAPER_KEYS),$(DEMO_RUNS)/$(k)) --data $(DEMO_SHARDS) --split val test

demo: demo-shards demo-train demo-evaluate  ## the whole paper pipeline on the synthetic set (docs/demo.md)
	$(PY) -m reproduce.report all $(foreach k,$(PAPER_KEYS),--runs $(k)=$(DEMO_RUNS)/$(k)) --out $(DEMO_OUT) --synthetic
	$(PY) -m reproduce.report operating-points $(foreach k,$(PAPER_KEYS),--runs $(k)=$(DEMO_RUNS)/$(k)) --out $(DEMO_OUT) --synthetic
	$(PY) -m reproduce.report calibration $(foreach k,$(PAPER_KEYS),--runs $(k)=$(DEMO_RUNS)/$(k)) --recalibrate platt --out $(DEMO_OUT) --synthetic
	$(PY) -m reproduce.report subgroups $(foreach k,$(PAPER_KEYS),--runs $(k)=$(DEMO_RUNS)/$(k)) --labels $(PHANTOM_DIR)/Data_Entry_2017_v2020.csv --out $(DEMO_OUT) --synthetic
	$(PY) -m reproduce.report expert $(foreach k,$(PAPER_KEYS),--runs $(k)=$(DEMO_RUNS)/$(k)) --expert-labels $(EXPERT_LABELS) --out $(DEMO_OUT) --synthetic
	$(PY) -m reproduce.localize --runs $(foreach k,$(LOCALIZE_KEYS),$(DEMO_RUNS)/$(k)) --data $(DEMO_SHARDS) --bbox $(PHANTOM_DIR)/BBox_List_2017.csv --out $(DEMO_OUT) --synthetic
	$(PY) -m reproduce.predict --run $(DEMO_RUNS)/densenet121_wce --out $(DEMO_OUT)/predict --cam $(DEMO_PREDICT_IMAGES)
	$(PY) -m reproduce.report.reference compare --ours $(DEMO_OUT) --reference $(DEMO_REFERENCE)

# Maintainers: make demo, make ablation and make demo-seeds, then this makes their results the committed reference.
demo-reference: setup  ## maintainers: make results/demo the committed reference
	$(PY) -m reproduce.report.reference save --ours $(DEMO_OUT) --reference $(DEMO_REFERENCE)

paper-shards: setup  ## your NIH images -> TFRecords at 224² (docs/real-data.md)
	$(PY) -m data_prep.build --data-dir $(DATA_DIR) --out $(SHARDS) --split-method $(SPLIT_METHOD) --size 224 --workers $(WORKERS) --seed $(SEED)

# Targets that read the paper's shards build them only when missing: the raw images may be gone.
$(SHARDS)/manifest.json:
	$(MAKE) paper-shards

paper-train: $(SHARDS)/manifest.json  ## train the four Table I runs (paper preset)
	$(PY) -m reproduce.runs --steps train --data $(SHARDS) --preset paper --runs-dir $(RUNS) --keys $(PAPER_KEYS) $(RUNS_OPTS)$(if $(TRAIN_OPTS), -- $(TRAIN_OPTS))

paper-evaluate: $(SHARDS)/manifest.json  ## their validation and test predictions
	$(PY) -m reproduce.runs --steps evaluate --data $(SHARDS) --preset paper --runs-dir $(RUNS) --keys $(PAPER_KEYS) $(RUNS_OPTS)

paper: $(SHARDS)/manifest.json  ## train and evaluate the four Table I runs (docs/gpus.md)
	$(PY) -m reproduce.runs --data $(SHARDS) --preset paper --runs-dir $(RUNS) --keys $(PAPER_KEYS) $(RUNS_OPTS)$(if $(TRAIN_OPTS), -- $(TRAIN_OPTS))

table1: setup  ## Table I from RUNS into RESULTS
	$(PY) -m reproduce.report table1 $(call RUN_ARGS,$(PAPER_KEYS),$(RUNS),$(SEEDS)) --out $(RESULTS)

figure1: setup  ## Figure 1 from RUNS into RESULTS
	$(PY) -m reproduce.report figure1 $(call RUN_ARGS,$(PAPER_KEYS),$(RUNS),$(SEEDS)) --out $(RESULTS)

# Beyond the AUC (docs/beyond-auc.md): read RUNS/<key>[_s<seed>]/predictions_{val,test}.csv (and the label file).
operating-points: setup  ## thresholds chosen on validation, applied to test; AUPRC (docs/beyond-auc.md)
	$(PY) -m reproduce.report operating-points $(call RUN_ARGS,$(PAPER_KEYS),$(RUNS),$(SEEDS)) --out $(RESULTS)

calibration: setup  ## Brier, ECE, reliability diagram; Platt recalibration fitted on validation
	$(PY) -m reproduce.report calibration $(call RUN_ARGS,$(PAPER_KEYS),$(RUNS),$(SEEDS)) --recalibrate platt --out $(RESULTS)

subgroups: labels  ## AUC by sex, age band, view and visit, Eq. (2) - wce per subgroup
	$(PY) -m reproduce.report subgroups $(call RUN_ARGS,$(PAPER_KEYS),$(RUNS),$(SEEDS)) --labels $(LABELS) --out $(RESULTS)

localize: labels  ## Grad-CAM boxes vs NIH's boxes (docs/use-a-model.md)
	$(PY) -m reproduce.localize --runs $(call RUN_DIRS,$(LOCALIZE_KEYS),$(RUNS),$(SEEDS)) --data $(SHARDS) --bbox $(BBOX) --out $(RESULTS)

predict: setup  ## predictions (and Grad-CAM) for IMAGES with RUN
	$(PY) -m reproduce.predict --run $(RUN) --out $(PREDICT_OUT) --cam $(or $(IMAGES),$(error make predict needs IMAGES="files or folders"))

# The smoke preset end to end (3 min 50 s on 2 cores, mostly 8 TensorFlow start-ups): a 160-image phantom at 32², the four Table I runs
# for 2 steps each (eager, no graph tracing), test predictions, Table I and Figure 1.
SMOKE_PHANTOM ?= data/smoke_phantom
SMOKE_SHARDS ?= data/smoke_tfrecords
SMOKE_OUT ?= results/smoke

smoke-shards: labels  ## make smoke's data: a 160-image phantom, its shards at 32²
	$(PY) -m data_prep.phantom --labels $(LABELS) --out $(SMOKE_PHANTOM) --images 160 --seed $(SEED) --workers $(WORKERS)
	$(PY) -m data_prep.build --data-dir $(SMOKE_PHANTOM) --out $(SMOKE_SHARDS) --split-method paper --size 32 --workers $(WORKERS) --seed $(SEED)

smoke: smoke-shards  ## a 4-minute look: the smoke preset end to end on a tiny phantom
	$(PY) -m reproduce.runs --data $(SMOKE_SHARDS) --preset smoke --runs-dir $(SMOKE_OUT)/runs --keys $(PAPER_KEYS)
	$(PY) -m reproduce.report all $(call RUN_ARGS,$(PAPER_KEYS),$(SMOKE_OUT)/runs) --out $(SMOKE_OUT) --synthetic

# CPU rehearsal of `make paper`: the paper preset exactly (224², batch 32, Adam 1e-3, flip) for the four
# Table I runs, evaluate and report, on a small phantom; only --weights none (offline), REHEARSE_EPOCHS and
# REHEARSE_STEPS change: 2 epochs of 1 step each still cross an epoch boundary (checkpoints, backup,
# validation twice). Times on 2 cores: docs/gpus.md#rehearse-on-a-cpu-first.
REHEARSE_IMAGES ?= 240
REHEARSE_PHANTOM ?= data/rehearsal_phantom
REHEARSE_SHARDS ?= data/rehearsal_tfrecords
REHEARSE_RUNS ?= results/rehearsal/runs
REHEARSE_OUT ?= results/rehearsal
REHEARSE_EPOCHS ?= 2
REHEARSE_STEPS ?= 1
.PHONY: rehearse-phantom rehearse-shards rehearse-runs rehearse rehearse-reference

rehearse-phantom: labels  ## make rehearse, step 1: its 240-image phantom
	$(PY) -m data_prep.phantom --labels $(LABELS) --out $(REHEARSE_PHANTOM) --images $(REHEARSE_IMAGES) --seed $(SEED) --workers $(WORKERS)

rehearse-shards: rehearse-phantom  ## step 2: its shards at 224²
	$(PY) -m data_prep.build --data-dir $(REHEARSE_PHANTOM) --out $(REHEARSE_SHARDS) --split-method paper --size 224 --workers $(WORKERS) --seed $(SEED)

rehearse-runs: rehearse-shards  ## step 3: the four runs at the paper preset, 2 epochs × 1 step
	$(PY) -m reproduce.runs --data $(REHEARSE_SHARDS) --preset paper --runs-dir $(REHEARSE_RUNS) --keys $(PAPER_KEYS) $(if $(GPUS),--gpus $(GPUS)) -- --weights none --epochs $(REHEARSE_EPOCHS) --steps-per-epoch $(REHEARSE_STEPS)

rehearse: rehearse-runs  ## CPU rehearsal of make paper on a small phantom (docs/gpus.md)
	$(PY) -m reproduce.report all $(call RUN_ARGS,$(PAPER_KEYS),$(REHEARSE_RUNS)) --out $(REHEARSE_OUT) --synthetic
	$(PY) -m reproduce.report.reference compare --ours $(REHEARSE_OUT) --reference $(REHEARSE_REFERENCE)

rehearse-reference: setup  ## maintainers: make results/rehearsal the committed reference
	$(PY) -m reproduce.report.reference save --ours $(REHEARSE_OUT) --reference $(REHEARSE_REFERENCE)

# Seed noise: DenseNet121 wce and ewl at the demo preset for seeds 0 1 2 (six runs, 7 min on a 2-core AMD EPYC; not part of make demo).
demo-seeds-runs: $(DEMO_SHARDS)/manifest.json  ## make demo-seeds' six runs (training and test predictions)
	$(PY) -m reproduce.runs --data $(DEMO_SHARDS) --preset demo --runs-dir $(DEMO_RUNS) --keys $(DEMO_SEED_KEYS) --seeds $(DEMO_SEEDS) $(if $(GPUS),--gpus $(GPUS))

demo-seeds: demo-seeds-runs  ## DenseNet121 wce and ewl over seeds 0 1 2 (docs/seeds.md)
	$(PY) -m reproduce.report all $(call RUN_ARGS,$(DEMO_SEED_KEYS),$(DEMO_RUNS),$(DEMO_SEEDS)) --out $(DEMO_OUT)/seeds --synthetic

expert: labels  ## the runs against Google's radiologist labels (docs/radiologists.md)
	$(PY) -m reproduce.report expert $(call RUN_ARGS,$(PAPER_KEYS),$(RUNS),$(SEEDS)) --expert-labels $(EXPERT_LABELS) --out $(RESULTS)

ablation: $(DEMO_SHARDS)/manifest.json  ## every reading of Eq. (2) trained and compared (docs/entropy_weighting_loss.md)
	$(PY) -m reproduce.ablation --data $(DEMO_SHARDS) --runs-dir $(DEMO_RUNS) --labels $(LABELS) --out $(DEMO_OUT) --synthetic

bench-data: phantom  ## data-prep benchmark (docs/benchmarks.md)
	$(PY) -m bench.data --data-dir $(PHANTOM_DIR) --out results/bench/data_prep.json

bench-train: $(DEMO_SHARDS)/manifest.json  ## training-step benchmark
	$(PY) -m bench.train --data $(DEMO_SHARDS) --images-dir $(PHANTOM_DIR) --out results/bench/train.json

# ... then the benchmark tables of docs/, regenerated from results/bench/*.json.
bench: bench-data bench-train  ## both, then the generated tables in docs/
	$(PY) -m bench.readme

bench-backends: $(DEMO_SHARDS)/manifest.json  ## DenseNet121 demo run under TensorFlow and under JAX: same test AUC?
	$(PY) -m bench.backends --data $(DEMO_SHARDS)

# Times the README quotes: make demo, make rehearse and make test here, line by line (make clean-demo first).
bench-times: setup  ## time make demo, rehearse and test on this CPU → results/bench/times_<cpu>.json
	$(PY) -m bench.make_times demo rehearse test

# On a GPU machine: the gpu extra (tensorflow[and-cuda]) first if TensorFlow sees no GPU; <= 8 min.
# The TensorFlow-free GPU benchmark on Keras' JAX backend (bench/README.md: the device command).
bench-device:  ## TensorFlow-free GPU benchmark on Keras' JAX backend (bench/README.md)
	bash bench/device.sh

bench-gpu: setup  ## GPU benchmark under TensorFlow (docs/gpus.md)
	bash bench/gpu.sh --install

clean-demo:  ## delete the phantom, its shards and results/demo
	rm -rf $(PHANTOM_DIR) $(DEMO_SHARDS) $(DEMO_OUT)

clean-smoke:  ## delete make smoke's phantom, shards and results/smoke (its checkpoints: 1.2 GB)
	rm -rf $(SMOKE_PHANTOM) $(SMOKE_SHARDS) $(SMOKE_OUT)

clean-rehearsal:  ## delete make rehearse's phantom, shards and results/rehearsal
	rm -rf $(REHEARSE_PHANTOM) $(REHEARSE_SHARDS) $(REHEARSE_OUT)
