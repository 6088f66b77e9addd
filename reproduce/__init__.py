"""Reproduction of Mo & Cai (2019): input pipeline, backbones, losses, training, evaluation, report."""
