"""Reproduction of Mo & Cai (2019): input pipeline, backbones, losses, training, evaluation, report."""
from data_prep import quiet

quiet.install()  # before anything imports TensorFlow: its start-up lines stay off the terminal
