"""The backbones' ImageNet weights (§IV.D "pre-trained baseline models"), fetched the Keras way.

    python -m reproduce.weights [--models vgg16 resnet50 densenet121] [--mirror URL]

`make weights` fetches the three notop files ahead of time into the Keras cache
($KERAS_HOME/models, else ~/.keras/models), where `--weights imagenet` finds them; training
downloads a missing one on first use. Each file is the one keras.applications itself downloads
(same URL, same name, same MD5: each backbone's record in reproduce/backbones.py), through `keras.utils.get_file` with its progress bar,
and reaches its final name only once its hash is verified. A machine without internet: run this
on one with internet and copy ~/.keras/models/*.h5 into the GPU node's Keras cache, or point
--mirror (or $REPRODUCE_WEIGHTS_MIRROR) at a folder URL that serves the three files. A failed
download is one `error:` line naming the URL, the file, the reason and the ways out.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import socket
import sys
import tempfile
import urllib.error
from pathlib import Path

from common import cli, quiet
from reproduce import backbones
from reproduce.backbones import NotopWeights

# Our choice: a download fails when the server sends nothing for this long (connect, or between
# two reads; urllib's socket timeout), so an unreachable or stalled server never hangs a run.
# Long enough for a slow proxy, short beside a training run. The name lookup is the system
# resolver's and keeps its own timeout.
TIMEOUT_S = 30.0
# Our choice: a folder URL serving the three files under their Keras names (a proxy, a mirror,
# file:///shared/keras-weights/); --mirror overrides it.
MIRROR_ENV = "REPRODUCE_WEIGHTS_MIRROR"


class ImagenetWeightsUnavailable(RuntimeError):
    """An ImageNet notop file is neither in the Keras cache nor downloadable (also reachable as
    reproduce.models.ImagenetWeightsUnavailable). A RuntimeError: the CLIs print it as one line."""


def notop(model_name: str) -> NotopWeights:
    """The ImageNet notop file of a backbone (its record in reproduce/backbones.py)."""
    record = backbones.backbone(model_name)
    if record.weights is None:
        raise ValueError(f"no ImageNet weights for model {model_name!r}; expected one of "
                         f"{backbones.pretrained()}")
    return record.weights


def cache_folder() -> Path:
    """The folder keras.applications downloads into: get_file(cache_subdir="models") under Keras'
    home, resolved as Keras resolves it (keras/src/backend/config.py: $KERAS_HOME, else ~/.keras,
    else /tmp/.keras when ~ is not writable; created; file_utils.get_file: /tmp/.keras when that is
    not writable). Read now: Keras reads $KERAS_HOME once, when it is imported."""
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    with contextlib.suppress(OSError):  # Keras makes its home when imported
        os.makedirs(home, exist_ok=True)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(home) / "models"


def _digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _verified(path: Path, record: NotopWeights) -> bool:
    return path.is_file() and _digest(path, record.hash_algorithm) == record.file_hash


@contextlib.contextmanager
def _exclusive(lock_path: Path, file_name: str):
    """One downloader per file across processes (make paper GPUS=0,1,2,3 starts two DenseNet121
    runs at once): the others wait here, then find the verified file."""
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process to finish downloading {file_name}", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _causes(err: BaseException):
    """err and the exceptions it was raised from (get_file re-raises urllib's as a bare Exception)."""
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _reason(err: BaseException, timeout_s: float) -> str:
    """The cause of a failed get_file, short: HTTP 404 Not Found, Connection refused, no answer."""
    for seen in _causes(err):
        if isinstance(seen, urllib.error.HTTPError):
            return f"HTTP {seen.code} {seen.reason}"
        if isinstance(seen, urllib.error.URLError):
            cause = seen.reason
            if isinstance(cause, TimeoutError):
                return f"no answer within {timeout_s:g} s"
            return (cause.strerror if isinstance(cause, OSError) and cause.strerror else None) or str(cause)
        if isinstance(seen, TimeoutError):
            return f"no answer within {timeout_s:g} s"
    return cli.one_line(err)


def _unavailable(model: str, record: NotopWeights, url: str, folder: Path,
                 reason: str) -> ImagenetWeightsUnavailable:
    name = record.file_name
    return ImagenetWeightsUnavailable(
        f"ImageNet weights for {model}: downloading {url} failed ({reason}); no verified "
        f"{name} in {folder}. Ways out: (1) `make weights` where there is internet (on another "
        f"machine: then copy its ~/.keras/models/*.h5 into {folder}); (2) copy {name} into "
        f"{folder} ($KERAS_HOME/models, the Keras cache); (3) --weights PATH with a notop .h5 "
        f"file (--weights none trains from scratch)")


def _download(model: str, record: NotopWeights, url: str, folder: Path, timeout_s: float) -> None:
    """get_file into NAME.partial (its progress bar, its hash check), then renamed to NAME: a
    partial or corrupt download never has the final name (get_file leaves a file that fails the
    hash under the name it was given)."""
    quiet.start_tensorflow()  # Keras' TensorFlow backend, with its start-up lines off the terminal
    from keras.utils import get_file  # here, not at import: --help needs no Keras

    partial = folder / f"{record.file_name}.partial"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # urlretrieve has no timeout argument
    try:
        got = get_file(partial.name, url, file_hash=record.file_hash, cache_subdir=folder.name,
                       cache_dir=str(folder.parent), force_download=True)
        if Path(got) != partial:  # get_file's own folder resolution chose another folder
            raise OSError(f"Keras downloaded {url} to {got}, expected {partial}")
        os.replace(partial, folder / record.file_name)
    except Exception as err:
        reason = _reason(err, timeout_s)
        for seen in _causes(err):  # an HTTPError holds the server's answer open (ResourceWarning)
            if isinstance(seen, urllib.error.HTTPError):
                seen.close()
        if isinstance(err, ValueError) and partial.is_file():  # get_file's hash check
            reason = (f"{record.hash_algorithm} of the download is "
                      f"{_digest(partial, record.hash_algorithm)}, Keras expects {record.file_hash}")
        raise _unavailable(model, record, url, folder, reason) from err
    finally:
        socket.setdefaulttimeout(previous)
        partial.unlink(missing_ok=True)


def fetch(model_name: str, *, mirror: str | None = None, timeout_s: float = TIMEOUT_S) -> tuple[Path, bool]:
    """(path of the verified notop file in the Keras cache, whether this call downloaded it)."""
    record = notop(model_name)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    folder = cache_folder()
    target = folder / record.file_name
    if _verified(target, record):
        return target, False
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / f"{record.file_name}.lock", record.file_name):
        if _verified(target, record):  # another process downloaded it while we waited
            return target, False
        if target.exists():
            print(f"{target}: its {record.hash_algorithm} differs from Keras' {record.file_hash}: "
                  "downloading it again", flush=True)
        _download(model_name, record, record.url(mirror), folder, timeout_s)
    return target, True


def imagenet_weights(model_name: str, *, mirror: str | None = None, timeout_s: float = TIMEOUT_S) -> Path:
    """The verified ImageNet notop file of `model_name` in the Keras cache, downloaded if missing
    (from `mirror`, $REPRODUCE_WEIGHTS_MIRROR, or Keras' own URL); ImagenetWeightsUnavailable
    otherwise, within `timeout_s` of silence from the server."""
    return fetch(model_name, mirror=mirror, timeout_s=timeout_s)[0]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("reproduce.weights", __doc__)
    parser.add_argument("--models", nargs="+", action="extend", choices=backbones.pretrained(),
                        metavar="MODEL", help=f"which backbones' notop files, of "
                                              f"{', '.join(backbones.pretrained())} (default: all)")
    parser.add_argument("--mirror", metavar="URL",
                        help=f"a folder URL serving the files under their Keras names, instead of "
                             f"Keras' own URLs (default: ${MIRROR_ENV} if set)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, metavar="SECONDS",
                        help="give up when the server sends nothing for this long")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        names = list(dict.fromkeys(args.models or backbones.pretrained()))
        for name in names:
            path, downloaded = fetch(name, mirror=args.mirror, timeout_s=args.timeout)
            print(f"{name}: {'downloaded' if downloaded else 'already present'}, "
                  f"{path.stat().st_size:,} bytes, {path}", flush=True)
        print(f"ImageNet weights ready in {cache_folder()}: {', '.join(names)} (for a machine without "
              "internet, copy them into its $KERAS_HOME/models or ~/.keras/models)")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
