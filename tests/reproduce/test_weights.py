"""ImageNet weights download on first use, the Keras way (reproduce.weights), and every failure is
one line, within seconds. All against a local HTTP server on 127.0.0.1 (conftest.weights_server)
serving a small fake file whose MD5 replaces Keras' in the table; the Keras cache is tmp_path
($KERAS_HOME, read at call time). One test checks the table against what keras.applications
itself passes to get_file."""
import dataclasses
import hashlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras  # noqa: F401  (now, before any test sets $KERAS_HOME: Keras reads it once, at import)
import pytest

from reproduce import backbones, weights
from reproduce.weights import ImagenetWeightsUnavailable

ROOT = Path(__file__).resolve().parents[2]
MODEL = "densenet121"
NAME = "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
FAKE = b"not really DenseNet121, but 35 bytes" * 100


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """An empty Keras cache, the fake file's MD5 in DenseNet121's record, no mirror from the env."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv(weights.MIRROR_ENV, raising=False)
    fake_md5 = hashlib.md5(FAKE).hexdigest()
    record = backbones.BACKBONES[MODEL]
    monkeypatch.setitem(backbones.BACKBONES, MODEL, dataclasses.replace(
        record, weights=dataclasses.replace(record.weights, file_hash=fake_md5)))
    return tmp_path / "models"


def assert_one_line_with_ways_out(message: str, url: str, folder: Path):
    assert "\n" not in message
    for part in (MODEL, url, NAME, str(folder), "make weights", "--weights PATH", "--weights none"):
        assert part in message, part


def test_download_lands_in_the_keras_cache_once(cache, weights_server):
    weights_server.files[NAME] = FAKE
    path, downloaded = weights.fetch(MODEL, mirror=weights_server.url)
    assert (path, downloaded) == (cache / NAME, True)
    assert path.read_bytes() == FAKE
    assert weights_server.requests == [f"/{NAME}"]
    # Found and verified the second time: no request.
    assert weights.imagenet_weights(MODEL, mirror=weights_server.url) == path
    assert weights.fetch(MODEL, mirror=weights_server.url) == (path, False)
    assert len(weights_server.requests) == 1
    assert sorted(p.name for p in cache.iterdir()) == [NAME, f"{NAME}.lock"]


def test_the_mirror_comes_from_the_environment(cache, weights_server, monkeypatch):
    weights_server.files[NAME] = FAKE
    monkeypatch.setenv(weights.MIRROR_ENV, weights_server.url.rstrip("/"))
    assert weights.imagenet_weights(MODEL) == cache / NAME
    assert weights_server.requests == [f"/{NAME}"]


def test_a_cached_file_with_another_hash_is_downloaded_again(cache, weights_server, capsys):
    cache.mkdir()
    (cache / NAME).write_bytes(FAKE[:100])  # e.g. a download cut short by an older Keras
    weights_server.files[NAME] = FAKE
    assert weights.fetch(MODEL, mirror=weights_server.url) == (cache / NAME, True)
    assert (cache / NAME).read_bytes() == FAKE
    assert "downloading it again" in capsys.readouterr().out


def test_hash_mismatch_is_one_line_and_leaves_no_file(cache, weights_server):
    weights_server.files[NAME] = FAKE + b"!"
    with pytest.raises(ImagenetWeightsUnavailable) as info:
        weights.imagenet_weights(MODEL, mirror=weights_server.url)
    message = str(info.value)
    assert_one_line_with_ways_out(message, weights_server.url + NAME, cache)
    assert f"md5 of the download is {hashlib.md5(FAKE + b'!').hexdigest()}" in message
    assert not (cache / NAME).exists() and not (cache / f"{NAME}.partial").exists()


def test_no_network_fails_within_seconds(cache):
    url = f"http://127.0.0.1:{closed_port()}/"
    start = time.perf_counter()
    with pytest.raises(ImagenetWeightsUnavailable) as info:
        weights.imagenet_weights(MODEL, mirror=url)
    assert time.perf_counter() - start < 10
    assert_one_line_with_ways_out(str(info.value), url + NAME, cache)
    assert "(Connection refused)" in str(info.value)
    assert not any(p.name != f"{NAME}.lock" for p in cache.iterdir())


def test_a_stalled_server_fails_within_the_timeout(cache):
    """The server accepts the connection (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        start = time.perf_counter()
        with pytest.raises(ImagenetWeightsUnavailable) as info:
            weights.imagenet_weights(MODEL, mirror=url, timeout_s=1.0)
        elapsed = time.perf_counter() - start
    assert 1.0 <= elapsed < 6.0
    assert "(no answer within 1 s)" in str(info.value)
    assert socket.getdefaulttimeout() is None  # restored


def test_http_404_is_named(cache, weights_server):
    with pytest.raises(ImagenetWeightsUnavailable, match=r"\(HTTP 404 Not Found\)"):
        weights.imagenet_weights(MODEL, mirror=weights_server.url)
    assert weights_server.requests == [f"/{NAME}"]


def test_two_at_once_download_once(cache, weights_server):
    """make paper GPUS=0,1,2,3 starts two DenseNet121 runs at once: one downloads, the other waits
    on the lock (flock: separate open files conflict, in threads as in processes), then finds it."""
    weights_server.files[NAME] = FAKE
    weights_server.delay_s = 0.5  # the first download is still running when the second asks
    results, errors = [], []

    def one():
        try:
            results.append(weights.fetch(MODEL, mirror=weights_server.url))
        except Exception as err:  # noqa: BLE001  (reported below, not lost in the thread)
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(results) == [(cache / NAME, False), (cache / NAME, True)]
    assert len(weights_server.requests) == 1


def test_cli_downloads_then_finds(cache, weights_server, capsys):
    weights_server.files[NAME] = FAKE
    assert weights.main(["--models", MODEL, "--mirror", weights_server.url]) == 0
    assert weights.main(["--models", MODEL, "--mirror", weights_server.url]) == 0
    out = capsys.readouterr().out
    assert f"{MODEL}: downloaded, {len(FAKE):,} bytes, {cache / NAME}" in out
    assert f"{MODEL}: already present, {len(FAKE):,} bytes, {cache / NAME}" in out
    assert f"ImageNet weights ready in {cache}: {MODEL}" in out


def test_cli_without_network_prints_one_error_line(tmp_path):
    """The user's view: a fresh process (TensorFlow's start-up lines included), exit 1, stderr
    exactly one `error:` line naming the URL."""
    url = f"http://127.0.0.1:{closed_port()}/"
    done = subprocess.run([sys.executable, "-m", "reproduce.weights", "--models", MODEL, "--mirror", url],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**_env(), "KERAS_HOME": str(tmp_path)})
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ImageNet weights for densenet121")
    assert url + NAME in done.stderr and "(Connection refused)" in done.stderr


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != weights.MIRROR_ENV}


def test_unknown_model_is_a_value_error():
    with pytest.raises(ValueError, match="tiny"):
        weights.imagenet_weights("tiny")


def test_the_table_is_what_keras_applications_passes_to_get_file(monkeypatch):
    """Each constructor with weights="imagenet", include_top=False, stopped at its get_file call:
    the file name, URL, cache_subdir and hash must be our table's (a Keras upgrade that changes
    one fails here). cache_dir None: Keras' home, which cache_folder() resolves the same way."""
    import keras
    from keras.src.backend.config import keras_home
    from keras.src.utils import file_utils

    class Stop(Exception):
        pass

    calls = []

    def get_file(*args, **kwargs):
        calls.append((args, kwargs))
        raise Stop

    monkeypatch.setattr(file_utils, "get_file", get_file)
    from reproduce import models

    for name in backbones.pretrained():
        family, record = backbones.BACKBONES[name], backbones.BACKBONES[name].weights
        with pytest.raises(Stop):
            models._constructor(family)(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
        (fname, origin), options = calls[-1]
        assert (fname, origin) == (record.file_name, record.origin), name
        assert options == {"cache_subdir": "models", "file_hash": record.file_hash}, name
        assert record.hash_algorithm == "md5"
    # $KERAS_HOME as when Keras read it (imported above, before any test changed it): the same folder.
    assert weights.cache_folder() == Path(keras_home()).expanduser() / "models"


def test_help_lists_every_option_without_keras():
    text = weights.build_parser().format_help()
    for option in ("--models", "--mirror", "--timeout", "--version"):
        assert option in text
    assert "vgg16, resnet50, densenet121 (default: all)" in " ".join(text.split())
