"""A new backbone is one record and a new loss one class plus one row (docs/architecture.md, "Add
a backbone", "Add a loss"): added here through those two tables only, they train at smoke scale,
are saved, load in safe mode in a process that has forgotten them, and are evaluated — no other
module of the package is touched."""
import sys
import textwrap

import keras
import pandas as pd
import pytest

from reproduce import backbones, losses
from reproduce.backbones import Backbone
from reproduce.config import smoke
from reproduce.losses import LossEntry

TOY_LOSS = textwrap.dedent('''
    import keras
    from keras import ops


    @keras.saving.register_keras_serializable(package="toy")
    class SquaredError(keras.losses.Loss):
        """Per image Σ_c (l_c − p_c)²: a toy loss on a sigmoid head."""

        def __init__(self, epsilon=1e-7, reduction="sum_over_batch_size", name="toy_squared_error",
                     dtype=None):
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.epsilon = float(epsilon)

        @classmethod
        def from_run(cls, config, manifest=None):
            return cls(epsilon=config.epsilon)

        def call(self, y_true, y_pred):
            return ops.sum((ops.cast(y_true, y_pred.dtype) - y_pred) ** 2, axis=-1)

        def get_config(self):
            return {**super().get_config(), "epsilon": self.epsilon}
''')


@pytest.fixture
def extended(tmp_path, monkeypatch):
    """MobileNetV2 (a keras.applications family) as one record, the toy loss as a class in a
    module of its own plus one row."""
    (tmp_path / "toy_losses.py").write_text(TOY_LOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(backbones.BACKBONES, "mobilenet_v2", Backbone(
        "mobilenet_v2", "keras.applications.mobilenet_v2:MobileNetV2", "tf", "out_relu",
        source="a test's new backbone"))
    monkeypatch.setitem(losses.LOSSES, "toy_se", LossEntry(
        "toy_se", "toy_losses:SquaredError", "sigmoid", "a test's new loss"))
    yield
    sys.modules.pop("toy_losses", None)
    keras.saving.get_custom_objects().pop("toy>SquaredError", None)


def test_a_new_backbone_and_loss_through_their_tables_only(extended, shards_dir, tmp_path):
    from reproduce.engine.inference import evaluate_run, load_model
    from reproduce.engine.training import train
    from reproduce.train import build_parser

    args = build_parser().parse_args(["--data", "D", "--out", "O", "--model", "mobilenet_v2",
                                      "--loss", "toy_se"])  # the CLI's choices read the tables
    assert (args.model, args.loss) == ("mobilenet_v2", "toy_se")
    run = tmp_path / "run"
    history = train(smoke().override(model="mobilenet_v2", loss="toy_se", batch_size=8), shards_dir, run)
    assert len(history) == 1
    evaluate_run(run, shards_dir, "test")
    assert len(pd.read_csv(run / "predictions_test.csv")) > 0
    # Safe-mode loading imports what the file names: forget the class, then load.
    sys.modules.pop("toy_losses")
    keras.saving.get_custom_objects().pop("toy>SquaredError")
    model = load_model(run / "best.keras")
    assert type(model.loss).__name__ == "SquaredError"
    assert model.get_layer("backbone_input").mode == "tf"
    assert any(layer.name == "out_relu" for layer in model.get_layer("mobilenetv2_1.00_32").layers)
