"""Get the real ChestX-ray14 label files without downloading the 42 GB of images.

    python -m data_prep.fetch_labels --out data/labels [--source DIR]

Three files: NIH's label file and bounding boxes, and Google's radiologist labels of 4,376 of the
same images (Majkowska et al., Radiology 2019; `python -m reproduce.report expert`). Each is looked
for, in order, in `--source`, in `$CXR14_LABELS_DIR`, in `../shared/data` beside the checkout, and
finally in the PyPI wheel of torchxrayvision (which ships all three), fetched with
`pip download --no-deps` so torch is never installed. Each file is checked against the SHA-256 of
the release we tested with, so a different or truncated file is reported, not used silently.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import cli
from common.checksums import sha256_file
from common.provenance import PROJECT_ROOT

# The NIH v2020 label file, the 2017 bounding boxes and Google's 2019 expert labels, as shipped in
# torchxrayvision 1.5.7 (all three under torchxrayvision/data/ in the wheel).
FILES = {
    "Data_Entry_2017_v2020.csv.gz": "9d4de640ee4f760215d8be98376b20387ca52f9c6b4d1b727cb588fb82f40b80",
    "BBox_List_2017.csv.gz": "cf9dc6029f65daa8b389415b0546af0eeeb91fbac7d63ec49d7f8de2fd8f40cd",
    "google2019_nih-chest-xray-labels.csv.gz": "1d1b846e463753ed0219f67e21b10c8aef381897dbd64865c8191aa5794e8048",
}
WHEEL = "torchxrayvision==1.5.7"


def _candidates(source: str | None) -> list[Path]:
    dirs = [source, os.environ.get("CXR14_LABELS_DIR"), PROJECT_ROOT.parent / "shared" / "data"]
    return [Path(d) for d in dirs if d]


def _from_wheel(out: Path, names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp]
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd[2:])}` failed; place {', '.join(names)} in {out} by hand")
        wheel = next(Path(tmp).glob("torchxrayvision-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in names:
                with zf.open(f"torchxrayvision/data/{name}") as src, open(out / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def fetch_labels(out: str | Path, source: str | None = None) -> Path:
    """Make sure `out` holds the three FILES with the expected checksums; return `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # File by file: a folder holding only NIH's two files still serves them (our choice).
    missing = [name for name in FILES if not (out / name).is_file()]
    for name in list(missing):
        found = next((d for d in _candidates(source) if (d / name).is_file()), None)
        if found is not None:
            shutil.copyfile(found / name, out / name)
            # Relative to the project (e.g. ../shared/data): no machine path on the terminal or in logs.
            shown = os.path.relpath(found, PROJECT_ROOT) if found.is_absolute() else found
            print(f"copied {name} from {shown}")
            missing.remove(name)
    if missing:
        print(f"downloading {', '.join(missing)} from the {WHEEL} wheel (29 MB, no torch)")
        _from_wheel(out, missing)
    for name, expected in FILES.items():
        if sha256_file(out / name) != expected:
            raise RuntimeError(f"{out / name}: checksum differs from the release we tested with")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("data_prep.fetch_labels", __doc__)
    parser.add_argument("--out", default="data/labels", help="folder to hold the label files")
    parser.add_argument("--source", help="a folder that already has them (nothing is downloaded)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        out = fetch_labels(args.out, args.source)
        print(f"label files ready in {out}: {', '.join(FILES)}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
