"""ChestX-ray14 preparation: label files, patient-wise splits, image conversion, TFRecord shards, and a synthetic ChestX-ray14 (phantom)."""
