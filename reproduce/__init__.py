"""Reproduction of Mo & Cai (2019): input pipeline, backbones, losses, training, evaluation, report."""
from common import quiet

quiet.install()  # before anything imports TensorFlow: its start-up lines stay off the terminal
