"""`import reproduce` makes every file the package writes loadable with plain Keras.

A run's `best.keras` holds `reproduce>BackboneInput`, one of the losses (`reproduce>...Loss`) and
possibly a reading of Eq. (2) from `reproduce.study.readings`; `keras.saving.load_model(path,
safe_mode=True)` finds them only once the modules that register them are imported. Importing
those modules imports Keras (and, on the TensorFlow backend, TensorFlow: seconds), which
`python -m reproduce.report` never needs. So `register()` imports them now if Keras is already
loaded, and otherwise puts a one-shot hook in front of `import keras` that imports them right
after Keras itself: `import reproduce, keras` and `import keras, reproduce` both work.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# Every module whose import registers a custom object (register_keras_serializable).
MODULES = ("reproduce.models", "reproduce.losses", "reproduce.study.readings")


def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    return bool(module is not None and getattr(module.__spec__, "_initializing", False))


def import_all() -> None:
    for name in MODULES:
        importlib.import_module(name)


class _AfterKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `keras` with the normal machinery, runs its import, then imports MODULES (once)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
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
        self._inner.exec_module(module)
        # Keras imported from the middle of one of MODULES: importing the others now would meet
        # that half-defined module (a circular import); it calls import_all() at its own end.
        if not any(_initializing(name) for name in MODULES):
            import_all()


def register() -> None:
    """Register every custom object now if Keras is loaded, else as soon as it is."""
    if "keras" in sys.modules:
        import_all()
    elif not any(isinstance(f, _AfterKeras) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())
