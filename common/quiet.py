"""TensorFlow starts quietly: its start-up lines are kept from the terminal unless asked for.

Importing TensorFlow 2.21 prints, twice, absl's "All log messages before absl::InitializeLog()",
oneDNN's notice and "Could not find cuda drivers", and its first device query prints a
`cuInit` error on a machine without a GPU — before TF_CPP_MIN_LOG_LEVEL can act. None of it is
about the user's run. `start_tensorflow()` imports it with file descriptor 2 sent to a temporary
file (every program calls it after parsing, before importing what imports TensorFlow: no import
hook); `set_defaults()` (called by the packages' __init__) sets TF_CPP_MIN_LOG_LEVEL=2 and
TF_ENABLE_ONEDNN_OPTS=1 unless already set. `REPRODUCE_VERBOSE=1` shows everything.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

VERBOSE = "REPRODUCE_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE, "") not in ("", "0")


@contextlib.contextmanager
def stderr_to_file():
    """File descriptor 2 (C++ logs and Python's stderr alike) goes to a temporary file; on an
    exception its content is written to the real stderr first."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def set_defaults() -> None:
    """TensorFlow's environment defaults, unless already set: oneDNN's CPU kernels on (off by
    default on AMD CPUs) and, unless REPRODUCE_VERBOSE, no INFO/WARNING lines from its C++ side.
    Called when a package of ours is imported, so they hold before any TensorFlow import."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def start_tensorflow():
    """Import TensorFlow and run its first device query with file descriptor 2 sent to a
    temporary file (shown only if the import fails); return the module. Programs call it after
    parsing their arguments and before importing the modules that import TensorFlow, so --help
    never starts it. Does nothing more once TensorFlow is imported."""
    set_defaults()
    if "tensorflow" in sys.modules or verbose():
        import tensorflow

        return tensorflow
    with stderr_to_file():
        import tensorflow

        tensorflow.config.list_physical_devices()  # the CUDA probe, quiet too
    return tensorflow
