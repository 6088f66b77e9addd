"""Shared fixtures: the committed label-file sample, the real NIH label files (fetched like
`make labels` does when not already in data/labels/), and a tiny synthetic ChestX-ray14 (phantom)
with its TFRecords, built once per test session."""
import os

# Before any TensorFlow import (common.quiet sets the same defaults when a package loads).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No test reaches the internet: ImageNet weights fetched without a test's own mirror are asked of
# a closed local port ("Connection refused" at once), never of storage.googleapis.com.
os.environ.setdefault("REPRODUCE_WEIGHTS_MIRROR", "http://127.0.0.1:9/")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TEST_DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]

# Tiny-scale constants used by several test modules.
PHANTOM_IMAGES = 160
SHARD_SIZE = 32  # the smallest input all three backbones accept; no resize in smoke runs


@pytest.fixture(scope="session")
def sample_labels() -> Path:
    """1,138 real rows (270 whole patients, every class >= 12 patients) of Data_Entry_2017_v2020."""
    return TEST_DATA / "Data_Entry_2017_v2020_sample.csv"


@pytest.fixture(scope="session")
def sample_bbox() -> Path:
    return TEST_DATA / "BBox_List_2017_sample.csv"


@pytest.fixture(scope="session")
def real_label_dir() -> Path:
    """The real NIH label files and Google's expert labels, from where `make labels` keeps them:
    data/labels/, else fetched there by the same code (`data_prep.fetch_labels`: ../shared/data
    beside the checkout, or the torchxrayvision wheel from PyPI, SHA-256 checked). A machine that
    can do neither skips the tests that need them, saying why."""
    from data_prep.fetch_labels import FILES, fetch_labels

    target = ROOT / "data" / "labels"
    if not all((target / name).is_file() for name in FILES):
        try:
            fetch_labels(target)
        except (RuntimeError, OSError) as err:
            pytest.skip(f"real label files not available: {err}")
    return target


@pytest.fixture(scope="session")
def real_labels(real_label_dir) -> Path:
    """The full real label file (112,120 images)."""
    return real_label_dir / "Data_Entry_2017_v2020.csv.gz"


@pytest.fixture(scope="session")
def real_bbox(real_label_dir) -> Path:
    return real_label_dir / "BBox_List_2017.csv.gz"


@pytest.fixture(scope="session")
def real_expert(real_label_dir) -> Path:
    """Google's radiologist labels of 4,376 NIH images (Majkowska et al. 2019)."""
    return real_label_dir / "google2019_nih-chest-xray-labels.csv.gz"


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory, sample_labels) -> Path:
    """A synthetic ChestX-ray14 in the NIH layout, labelled from the real sample."""
    from data_prep.phantom import make_phantom

    out = tmp_path_factory.mktemp("phantom")
    make_phantom(sample_labels, out, n_images=PHANTOM_IMAGES, seed=0)
    return out


@pytest.fixture(scope="session")
def shards_dir(tmp_path_factory, phantom_dir) -> Path:
    """TFRecords of the phantom at 32×32 (paper split), as `data_prep.build` writes them."""
    from data_prep.build import build_dataset

    out = tmp_path_factory.mktemp("shards")
    build_dataset(phantom_dir, out, split="paper", size=SHARD_SIZE, workers=1, seed=0)
    return out


@pytest.fixture(scope="session")
def multi_shards_dir(tmp_path_factory, phantom_dir) -> Path:
    """The same phantom at 32², 16 records per shard: several shard files per split, so that
    workers of a multi-worker run can each read their own."""
    from data_prep.build import build_dataset

    out = tmp_path_factory.mktemp("multi_shards")
    build_dataset(phantom_dir, out, split="paper", size=SHARD_SIZE, workers=1, seed=0, images_per_shard=16)
    return out


@pytest.fixture(scope="session")
def predict_run(tmp_path_factory, phantom_dir):
    """(run folder, TFRecord folder): the phantom stored at 48², a tiny model trained at 32² for
    one smoke epoch (so evaluate and predict both resize in TensorFlow), evaluated on test."""
    from data_prep.build import build_dataset
    from reproduce.config import smoke
    from reproduce.engine.inference import evaluate_run
    from reproduce.engine.training import train

    root = tmp_path_factory.mktemp("predict")
    build_dataset(phantom_dir, root / "shards", split="paper", size=48, workers=1, seed=0)
    train(smoke().override(model="tiny"), root / "shards", root / "run")
    evaluate_run(root / "run", root / "shards", "test")
    return root / "run", root / "shards"


def _write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, **elements):
    """A DICOM file written with pydicom itself (explicit VR little endian, DX image class);
    `elements`: extra data elements by keyword (WindowCenter=…, VOILUTSequence=…)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    ds.SOPInstanceUID = generate_uid()
    pixels = np.asarray(pixels)
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


@pytest.fixture
def write_dicom():
    """write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, **elements) -> path."""
    return _write_dicom


@pytest.fixture
def weights_server():
    """A local HTTP server on 127.0.0.1 (a thread): `.files[name] = bytes` serves /name, anything
    else is 404; `.requests` lists every GET path; `.delay_s` waits before answering; `.url` is
    its folder URL (a --mirror)."""
    import http.server
    import threading
    import time
    from types import SimpleNamespace

    state = SimpleNamespace(files={}, requests=[], delay_s=0.0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append(self.path)
            time.sleep(state.delay_s)
            body = state.files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # no access log on stderr
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_port}/"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()
