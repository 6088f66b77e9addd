"""ChestX-ray14 preparation: label files, patient-wise splits, image conversion, TFRecord shards, and a
synthetic ChestX-ray14 (phantom)."""
from common import quiet

quiet.set_defaults()  # TensorFlow's environment defaults, before anything imports it

