"""SHA-256 of a file, read in 1 MiB blocks: one helper for shards, label files, manifests and
prediction CSVs, so every hash in manifest.json, config.json and report_config.json means the same."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
