"""ChestX-ray14 preparation: label files, patient-wise splits, image conversion, TFRecord shards, and a
synthetic ChestX-ray14 (phantom)."""
from common import quiet

quiet.install()  # before anything imports TensorFlow: its start-up lines stay off the terminal

