"""The one configuration of a training run, and its presets.

Every field says where its value comes from: a section of the paper (Mo & Cai 2019), or
"our choice" with the reason (each our-choice is also listed in docs/paper_map.md).
CLI flags override fields by name (`Config.override`); an unknown name is an error.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

# §IV.D: the three backbones of Table I; "tiny" is a 2-conv CNN for tests only (not in the paper).
MODELS = ("vgg16", "resnet50", "densenet121", "tiny")
DISTRIBUTE = ("none", "mirrored", "multiworker")


@dataclasses.dataclass(frozen=True)
class Config:
    # --- what is trained ---------------------------------------------------------------------
    model: str = "densenet121"  # §III "DenseNet121 is utilized as baseline"; §IV.D also VGG16, ResNet50
    loss: str = "wce"  # §III.B Eq.(1) weighted CE ("wce") or Eq.(2) entropy weighting ("ewl")
    weights: str = "imagenet"  # §IV.D "pre-trained baseline models": ImageNet; "none" or a file path
    # --- input -------------------------------------------------------------------------------
    image_size: int = 224  # §IV.B "downscaled the images to 224×224"
    horizontal_flip: bool = True  # §IV.B "Random horizontal flipping was performed as data augmentation"
    shuffle_buffer: int = 2048  # not stated — our choice: records are pre-shuffled across shards
    cache: bool = False  # our choice: cache decoded images in RAM (demo/smoke: small sets)
    # --- optimisation ------------------------------------------------------------------------
    optimizer: str = "adam"  # §IV.B "optimized the network using Adam [12]"
    learning_rate: float = 1e-3  # §IV.B "learning rate initialed as 0.001"
    batch_size: int = 32  # §IV.B "with 32 minibatch size" (global batch under distribution)
    epochs: int = 50  # §IV.B "we trained each model for 50 epochs"
    steps_per_epoch: int | None = None  # our choice: None = one full pass over train per epoch
    # --- losses ------------------------------------------------------------------------------
    wce_factors: str = "batch"  # not stated — our choice: Wang et al. [5] per-batch β_P, β_N; or "dataset"
    epsilon: float = 1e-7  # not stated — our choice: probabilities clipped to [ε, 1-ε] before log
    # --- checkpoints and evaluation ----------------------------------------------------------
    checkpoint: str = "best"  # not stated — our choice: best val mean AUC; "last" also saved
    # --- execution ---------------------------------------------------------------------------
    seed: int = 0  # our choice: seeds shuffle, flip, head init
    mixed_precision: bool = False  # not in paper (GTX 1080Ti, fp32 implied); mixed_float16 on GPU
    distribute: str = "none"  # not in paper (one GPU); "mirrored" or "multiworker" (TF_CONFIG)
    run_eagerly: bool = False  # our choice for tiny CPU runs: skips ~100 s graph tracing
    jit_compile: bool = False  # XLA; helps on GPU, hurts on CPU (measured, see README)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.distribute not in DISTRIBUTE:
            raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {self.distribute!r}")
        if self.wce_factors not in ("batch", "dataset"):
            raise ValueError(f"wce_factors must be 'batch' or 'dataset', got {self.wce_factors!r}")
        if self.checkpoint not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {self.checkpoint!r}")
        if self.image_size < 32:
            raise ValueError("image_size must be >= 32 (the smallest input all three backbones take)")
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    def override(self, **changes) -> "Config":
        """A copy with fields replaced by name; None values are ignored; unknown names fail."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path, **extra) -> None:
        """Write the resolved config as JSON (plus `extra` keys such as the preset name)."""
        Path(path).write_text(json.dumps({**self.to_dict(), **extra}, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        data = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def paper() -> Config:
    """Mo & Cai §IV.B: 224², Adam 1e-3, batch 32, 50 epochs, flip, ImageNet weights.

    `make paper DATA_DIR=…` (four runs of 50 epochs over ~78k training images). Runtime is a GPU
    matter not measured here: `make bench-gpu` prints the img/s and the Table I hours for yours;
    on this 2-core CPU DenseNet121 trains at 1.7 img/s at 224², i.e. ~13 h per epoch."""
    return Config()


def demo() -> Config:
    """The synthetic ChestX-ray14 at laptop scale: `make demo` trains the four Table I runs in
    about 15 minutes on 2 CPU cores (README). Our choices, measured on the phantom (1,200 images):
    64² input (DenseNet121 trains at ~50 img/s there, 1.7 at 224²); no ImageNet weights (none
    offline), so training is from scratch, and Adam's rate is 3e-4 for 8 epochs: at the paper's
    1e-3 VGG16 (no BatchNorm) stayed at val mean AUC 0.43 after 3 epochs; at 1e-4 DenseNet121 and
    ResNet50 reached only 0.62–0.64 in 6; at 3e-4, 8 epochs: VGG16 0.85, DenseNet121 0.76."""
    return Config(weights="none", image_size=64, epochs=8, learning_rate=3e-4, cache=True,
                  shuffle_buffer=1024)


def smoke() -> Config:
    """Seconds: for tests. 32² (smallest size all backbones accept), 1 epoch of 2 steps, eager."""
    return Config(weights="none", image_size=32, epochs=1, batch_size=8, steps_per_epoch=2,
                  cache=True, shuffle_buffer=64, run_eagerly=True)


PRESETS = {"paper": paper, "demo": demo, "smoke": smoke}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()
