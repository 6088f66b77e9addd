"""Reproduction of Mo & Cai (2019): input pipeline, backbones, losses, training, evaluation, report."""
from common import quiet

quiet.set_defaults()  # TensorFlow's environment defaults, before anything imports it
