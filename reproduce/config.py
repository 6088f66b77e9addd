"""The one configuration of a training run, and its presets.

Every field says where its value comes from: a section of the paper (Mo & Cai 2019), or
"our choice" with the reason (each our-choice is also listed in docs/paper_map.md); that text is
also the field's --help. `python -m reproduce.train` has one option per field, named after it
(`add_arguments`); `Config.override` replaces fields by name and an unknown name is an error.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from reproduce import backbones, losses

DISTRIBUTE = ("none", "mirrored", "multiworker")


def _field(default, why: str):
    """A Config field whose `why` (paper section or "our choice") is also its --help text."""
    return dataclasses.field(default=default, metadata={"why": why})


@dataclasses.dataclass(frozen=True)
class Config:
    # --- what is trained ---------------------------------------------------------------------
    model: str = _field("densenet121", '§III "DenseNet121 is utilized as baseline"; §IV.D also '
                        "VGG16, ResNet50 (tiny, tiny-bn: 2-conv CNNs for tests; every backbone: "
                        "reproduce/backbones.py)")
    loss: str = _field("wce", "§III.B Eq. (1) weighted CE (wce) or Eq. (2) entropy weighting (ewl); "
                       "other names: the Eq. (2) readings (every loss: reproduce/losses)")
    weights: str = _field("imagenet", '§IV.D "pre-trained baseline models": imagenet, none, or a '
                          "weights file")
    initializer: str = _field("keras", "our choice: how weights that are not loaded (the head; a "
                              "backbone with weights none) are drawn: keras = the backend's own "
                              "generator (one seed, other weights under TensorFlow and JAX), "
                              "numpy = the same distributions drawn by NumPy, the same network "
                              "on every backend (reproduce.init_weights)")
    # --- input -------------------------------------------------------------------------------
    image_size: int = _field(224, '§IV.B "downscaled the images to 224×224"')
    horizontal_flip: bool = _field(True, '§IV.B "Random horizontal flipping was performed as data '
                                   'augmentation" (training only)')
    shuffle_buffer: int = _field(2048, "not stated, our choice: records are also pre-shuffled "
                                 "across shards by data_prep.build")
    cache: bool = _field(False, "our choice: cache decoded images in RAM (demo/smoke: small sets)")
    # --- optimisation ------------------------------------------------------------------------
    optimizer: str = _field("adam", '§IV.B "optimized the network using Adam [12]"; sgd (plain, '
                            "our choice, not for Table I): exactness checks, where Adam's first "
                            "steps turn round-off into whole ±lr steps (docs/exactness.md)")
    learning_rate: float = _field(1e-3, '§IV.B "learning rate initialed as 0.001" (constant)')
    batch_size: int = _field(32, '§IV.B "with 32 minibatch size"; the global batch under '
                             "--distribute")
    epochs: int = _field(50, '§IV.B "we trained each model for 50 epochs"')
    steps_per_epoch: int | None = _field(None, "our choice: none = one full pass over the training "
                                         "split per epoch")
    # --- losses ------------------------------------------------------------------------------
    wce_factors: str = _field("batch", "not stated, our choice: batch = Wang et al. [5]'s beta_P, "
                              "beta_N from each global batch; dataset = fixed per class from the "
                              "training split")
    epsilon: float = _field(1e-7, "not stated, our choice: probabilities clipped to [eps, 1-eps] "
                            "before the log (Keras' own epsilon)")
    # --- checkpoints and evaluation ----------------------------------------------------------
    checkpoint: str = _field("best", "not stated, our choice: evaluate best (highest validation "
                             "mean AUC) or last; both are saved")
    val_batch_size: int = _field(128, "our choice: images per validation forward pass (no "
                                 "gradients, so larger than the training batch)")
    # --- execution ---------------------------------------------------------------------------
    seed: int = _field(0, "our choice: seeds the head's initialisation, data order and flips "
                       "(each epoch's order and flips are a function of seed and epoch only)")
    deterministic: bool = _field(False, "our choice: TensorFlow op determinism and one inter-op "
                                 "thread (bit-identical reruns and resumes on a CPU); off in "
                                 "paper: it costs GPU speed")
    mixed_precision: bool = _field(False, "not in the paper (GTX 1080Ti, fp32 implied): "
                                   "mixed_float16 on a GPU")
    jit_compile: str = _field("auto", "XLA: auto (Keras' default: on for a GPU without "
                              "tf.distribute or op determinism, off on a CPU), on, off")
    steps_per_execution: int = _field(1, "our choice: training steps per compiled call (fewer "
                                      "host round trips on an accelerator)")
    distribute: str = _field("none", "not in the paper (one GPU): mirrored (all local devices) or "
                             "multiworker (TF_CONFIG); the global batch stays batch_size")
    batchnorm_momentum: float = _field(0.99, "not stated, our choice: momentum of BatchNorm's "
                                       "moving mean and variance, which only inference uses "
                                       "(0.99 = keras.applications' own; the demo's 0.9: "
                                       "reproduce.config.demo)")
    sync_batchnorm: bool = _field(True, "our choice: with more than one replica, BatchNorm "
                                  "statistics of the global batch, as on one device")
    cpu_replicas: int = _field(0, "our choice: split the CPU into this many logical devices (0 = "
                               "the machine's devices); simulates --distribute mirrored without GPUs")
    run_eagerly: bool = _field(False, "our choice for tiny CPU runs: no graph tracing")

    def __post_init__(self):
        for name, allowed in choices().items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0 <= self.batchnorm_momentum < 1:
            raise ValueError(f"batchnorm_momentum must be in [0, 1), got {self.batchnorm_momentum}")
        if self.image_size < 32:
            raise ValueError("image_size must be >= 32 (the smallest input all three backbones take)")
        for name in ("batch_size", "epochs", "val_batch_size", "steps_per_execution"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1 or none")
        if self.cpu_replicas < 0:
            raise ValueError("cpu_replicas must be >= 0")

    def override(self, **changes) -> "Config":
        """A copy with the named fields replaced (None included); unknown names fail."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path, **extra) -> None:
        """Write the resolved config as JSON (plus `extra` keys such as the preset name)."""
        Path(path).write_text(json.dumps({**self.to_dict(), **extra}, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        data = json.loads(Path(path).read_text())
        names = set(field_names())
        return cls(**{k: v for k, v in data.items() if k in names})


def paper() -> Config:
    """Mo & Cai §IV.B: 224², Adam 1e-3, batch 32, 50 epochs, flip, ImageNet weights.

    `make paper DATA_DIR=…` (four runs of 50 epochs over ~78k training images). Its hours are a
    GPU matter: `make bench-gpu` and `make bench-device` print the img/s and the Table I hours of
    yours (docs/gpus.md); on a CPU, `train` prints the time per epoch it measures."""
    return Config()


def demo() -> Config:
    """The synthetic ChestX-ray14 at laptop scale: `make demo` trains the four Table I runs in a few
    minutes on 2 CPU cores (times per CPU: README, from results/bench/times_*.json). Our choices,
    each measured on the phantom (the numbers: docs/paper_map.md, "The demo preset" and
    "BatchNorm's moving mean and variance"):
    - no ImageNet weights (none offline), so training is from scratch, with Adam at 3e-4 (1e-3
      left VGG16, without BatchNorm, at chance; 1e-4 was too slow for 6 epochs);
    - 48² input, 6 epochs: the shortest that every backbone learns in;
    - BatchNorm momentum 0.9: keras.applications' 0.99 remembers the initial statistics for
      hundreds of steps, more than the demo takes;
    - deterministic, data cached in RAM: `make demo` repeats itself bit for bit on one CPU."""
    return Config(weights="none", image_size=48, epochs=6, learning_rate=3e-4, cache=True,
                  shuffle_buffer=1024, deterministic=True, batchnorm_momentum=0.9)


def smoke() -> Config:
    """Seconds: for tests. 32² (smallest size all backbones accept), 1 epoch of 2 steps, eager."""
    return Config(weights="none", image_size=32, epochs=1, batch_size=8, steps_per_epoch=2,
                  cache=True, shuffle_buffer=64, run_eagerly=True, deterministic=True,
                  val_batch_size=32)


PRESETS = {"paper": paper, "demo": demo, "smoke": smoke}
# Fields whose values are a closed set (model and loss: their tables, `choices`).
CHOICES = {"distribute": DISTRIBUTE, "wce_factors": ("batch", "dataset"),
           "checkpoint": ("best", "last"), "optimizer": ("adam", "sgd"), "jit_compile": ("auto", "on", "off"),
           "initializer": ("keras", "numpy")}


def choices() -> dict:
    """Every closed-set field's values, the backbones and losses read from their tables when
    asked (a record added to reproduce/backbones.py, a row to reproduce/losses, is a valid
    --model or --loss at once)."""
    return {"model": backbones.names(), "loss": losses.names(), **CHOICES}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(Config))


def _optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


_TYPES = {"str": str, "int": int, "float": float, "int | None": _optional_int}


def _as_option(name: str, value) -> str:
    """A value as the command line gives it: --flag / --no-flag, none, 0.001."""
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{name.replace('_', '-')}"
    return "none" if value is None else str(value)


def _preset_values(name: str, presets: dict) -> str:
    shown = {preset_name: _as_option(name, getattr(c, name)) for preset_name, c in presets.items()}
    if len(set(shown.values())) == 1:
        return f"[every preset: {next(iter(shown.values()))}]"
    return "[" + ", ".join(f"{k}: {v}" for k, v in shown.items()) + "]"


def add_arguments(parser, extra_choices: dict | None = None) -> None:
    """One option per Config field, named after it (`--learning-rate` sets learning_rate), help
    = the field's source; unset options keep the preset's value (`overrides`)."""
    group = parser.add_argument_group(
        "configuration", "every Config field (reproduce/config.py); unset = the --preset's value; "
        "each preset's value in brackets, as the option takes it")
    allowed = {**choices(), **(extra_choices or {})}
    presets = {name: make() for name, make in PRESETS.items()}
    for f in dataclasses.fields(Config):
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS,
                  "help": f"{f.metadata['why']} {_preset_values(f.name, presets)}"}
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _TYPES[f.type]
            kwargs["metavar"] = f.name.upper()
        if f.name in allowed:
            kwargs["choices"] = allowed[f.name]
            kwargs.pop("metavar", None)
        group.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def overrides(args) -> dict:
    """The Config fields given on the command line (parsed by a parser from `add_arguments`)."""
    return {name: getattr(args, name) for name in field_names() if hasattr(args, name)}
