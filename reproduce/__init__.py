"""Reproduction of Mo & Cai (2019): input pipeline, backbones, losses, training, evaluation, report."""
from common import quiet

quiet.install()  # before anything imports TensorFlow: its start-up lines stay off the terminal

from reproduce import custom_objects  # noqa: E402  (after quiet: Keras may import TensorFlow)

custom_objects.register()  # `import reproduce` lets keras.saving.load_model read every file we write
