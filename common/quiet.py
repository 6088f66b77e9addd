"""TensorFlow starts quietly: its start-up lines are kept from the terminal unless asked for.

Importing TensorFlow 2.21 prints, twice, absl's "All log messages before absl::InitializeLog()",
oneDNN's notice and "Could not find cuda drivers", and its first device query prints a
`cuInit` error on a machine without a GPU — before TF_CPP_MIN_LOG_LEVEL can act. None of it is
about the user's run. `install()` (called by the packages' __init__, so before anything imports
TensorFlow) puts a one-shot import hook in front of `import tensorflow`: the import and the first
device query run with file descriptor 2 sent to a temporary file, which is shown only if the
import fails. It also sets, unless already set, TF_CPP_MIN_LOG_LEVEL=2 (no INFO/WARNING lines
from TensorFlow's C++ side) and TF_ENABLE_ONEDNN_OPTS=1 (oneDNN's CPU kernels, off by default on
AMD CPUs). `REPRODUCE_VERBOSE=1` turns all of this off and shows everything.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
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


class _QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `tensorflow` with the normal machinery and runs its import quietly (once)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the lookup below from finding us
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._inner, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        with stderr_to_file():
            self._inner.exec_module(module)
            module.config.list_physical_devices()  # the CUDA probe, quiet too


def install() -> None:
    """Set TensorFlow's environment defaults and hook its import (no-op if already imported)."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
