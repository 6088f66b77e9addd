"""Writing TFRecord shards atomically and resumably, and the manifest that describes them.

Each shard is one task: its images are converted (`data_prep.images`), serialized with
`data_prep.schema.encode_example` (the only schema definition) and written to `NAME.partial`; when
complete, its record count, sha256 and skipped images go to `OUT/.build/NAME.json` and the file is
renamed to NAME. A complete shard is therefore always a final name plus its `.build` note, so a
re-run (after kill -9, say) skips it and rewrites only the rest, byte for byte the same.
`OUT/.build/plan.json` pins what each shard holds; a re-run with other settings is refused rather
than mixing shards of two builds (nothing complete is ever deleted).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import struct
from pathlib import Path

from common import quiet
from common.checksums import sha256_file
from data_prep.images import ImageError, load_image
from data_prep.schema import SHARD_GLOB, SHARD_TEMPLATE, SPLITS

BUILD_DIR = ".build"  # OUT/.build/: plan.json + one note per complete shard
PARTIAL_SUFFIX = ".partial"  # not matched by schema.SHARD_GLOB, so readers never see half a shard


class ShardError(ValueError):
    """An output folder that holds shards of a different build, or a shard that was altered."""


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard: where it goes and the (image_index, path, patient_id, labels) it holds, in order."""

    out_dir: str
    split: str
    index: int
    count: int
    size: int
    encoding: str
    skip_bad: bool
    items: tuple

    @property
    def name(self) -> str:
        return SHARD_TEMPLATE.format(split=self.split, index=self.index, count=self.count)


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON to a temporary name, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(tmp, "w") as fh:
        fh.write(json.dumps(obj, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _completed(task: ShardTask) -> dict | None:
    """The note of a complete shard, or None when the shard still has to be written."""
    out = Path(task.out_dir)
    final, note = out / task.name, out / BUILD_DIR / f"{task.name}.json"
    if not (final.is_file() and note.is_file()):
        return None
    done = json.loads(note.read_text())
    if final.stat().st_size != done["bytes"]:
        raise ShardError(f"{final}: size differs from when it was written (altered?); "
                         "rebuild into a new --out")
    return done


def write_shard(task: ShardTask, on_image=None) -> dict:
    """Write one shard (or find it complete): {file, records, bytes, sha256, skipped}."""
    import tensorflow as tf

    from data_prep.schema import encode_example

    done = _completed(task)
    if done is not None:
        if on_image is not None:
            on_image(len(task.items))
        return done
    out = Path(task.out_dir)
    final = out / task.name
    partial = out / (task.name + PARTIAL_SUFFIX)
    skipped, records = [], 0
    with tf.io.TFRecordWriter(str(partial)) as writer:
        for image_index, path, patient_id, labels in task.items:
            try:
                image = load_image(path, task.size)
            except ImageError as err:
                if not task.skip_bad:
                    raise
                reason = str(err).removeprefix(f"{path}: ")  # the path has its own field
                skipped.append({"image_index": image_index, "path": path, "reason": reason})
            else:
                record = encode_example(image, labels, image_index, patient_id, task.encoding)
                writer.write(record)
                records += 1
            if on_image is not None:
                on_image(1)
    with open(partial, "rb+") as fh:  # on disk before the rename makes it "complete"
        os.fsync(fh.fileno())
    done = {"file": task.name, "records": records, "bytes": partial.stat().st_size,
            "sha256": sha256_file(partial), "skipped": skipped}
    # Note first, rename second: a final name without its note cannot exist.
    write_json_atomic(out / BUILD_DIR / f"{task.name}.json", done)
    os.replace(partial, final)
    return done


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # our choice: parallelism comes from processes, one core each
    quiet.start_tensorflow()  # loaded once per worker, not once per shard


def write_shards(tasks: list[ShardTask], workers: int = 1, progress=None) -> list[dict]:
    """Write all shards, `workers` processes, one shard per task; results in task order.

    `progress(n)` is called as images are done (per image in-process, per shard with workers).
    Workers are spawned, not forked: forking a process that has loaded TensorFlow can deadlock.
    """
    if workers <= 1 or len(tasks) <= 1:
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # same per-core work as a worker, so the bench compares like with like
        try:
            return [write_shard(task, progress) for task in tasks]
        finally:
            cv2.setNumThreads(threads)
    results = {}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
        for done in pool.imap_unordered(write_shard, tasks):
            results[done["file"]] = done
            if progress is not None:
                progress(done["records"] + len(done["skipped"]))
    return [results[task.name] for task in tasks]


def check_plan(out_dir: str | Path, plan: dict) -> None:
    """Record the plan of this build, or refuse when OUT holds shards of a different one."""
    out = Path(out_dir)
    plan_path = out / BUILD_DIR / "plan.json"
    if plan_path.is_file():
        if json.loads(plan_path.read_text()) != plan:
            raise ShardError(f"{out}: holds shards of a different build (settings or images differ "
                             f"from {plan_path}); use a new --out")
        return
    existing = sorted(p.name for split in SPLITS for p in out.glob(SHARD_GLOB.format(split=split)))
    if existing:
        raise ShardError(f"{out}: holds shards ({existing[0]}, ...) not made by this build; use a new --out")
    (out / BUILD_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(plan_path, plan)


def manifest(size: int, encoding: str, classes, summary: dict, shard_results: dict,
             skipped: list, synthetic: bool = False) -> dict:
    """manifest.json as in docs/architecture.md; `summary` is split.split_summary of the written
    images, `shard_results` maps split -> write_shard results in shard order, `synthetic` whether
    the images are the phantom's (a fact of the data: data_prep.build reads it from phantom.json)."""
    splits = {}
    for name, part in summary["splits"].items():
        shards = [{"file": d["file"], "records": d["records"], "bytes": d["bytes"],
                   "sha256": d["sha256"]} for d in shard_results.get(name, [])]
        records = sum(s["records"] for s in shards)
        if records != part["images"]:
            raise ShardError(f"{name}: shards hold {records} records but the split has "
                             f"{part['images']} images")
        splits[name] = {**part, "shards": shards}
    return {
        "size": size,
        "encoding": encoding,
        "synthetic": bool(synthetic),
        "classes": list(classes),
        "split": {"method": summary["method"], "seed": summary["seed"]},
        "splits": splits,
        "skipped": sorted(skipped, key=lambda s: s["image_index"]),
    }


def count_records(path: str | Path) -> int:
    """Records in a TFRecord file, read from its framing alone (length, CRC, data, CRC per
    record; one seek per record, no parsing); a file that ends inside a record is a ShardError."""
    path = Path(path)
    size, count, offset = path.stat().st_size, 0, 0
    with open(path, "rb") as fh:
        while offset < size:
            header = fh.read(12)  # uint64 length + uint32 masked CRC of the length
            if len(header) < 12:
                raise ShardError(f"{path}: truncated (ends inside record {count + 1}'s header)")
            (length,) = struct.unpack("<Q", header[:8])
            offset += 12 + length + 4
            if offset > size:
                raise ShardError(f"{path}: truncated (record {count + 1} needs {offset} bytes, "
                                 f"the file has {size})")
            fh.seek(offset)
            count += 1
    return count


def verify_shards(data_dir: str | Path, manifest: dict, splits, checksums: bool = False) -> None:
    """Check every shard of `splits` against manifest.json before anything reads it: present,
    its size (manifests from before sizes were recorded: skipped), its record count from the
    framing, and with `checksums` its SHA-256. Raises ShardError naming the shard."""
    data_dir = Path(data_dir)
    for split in splits:
        for shard in manifest["splits"].get(split, {}).get("shards", []):
            path = data_dir / shard["file"]
            if not path.is_file():
                raise ShardError(f"{path}: shard listed in manifest.json is missing")
            size = path.stat().st_size
            if "bytes" in shard and size != shard["bytes"]:
                raise ShardError(f"{path}: {size} bytes, manifest.json says {shard['bytes']} "
                                 "(truncated, or a shard of another build)")
            found = count_records(path)
            if found != shard["records"]:
                raise ShardError(f"{path}: {found} records, manifest.json says {shard['records']}")
            if checksums and sha256_file(path) != shard["sha256"]:
                raise ShardError(f"{path}: SHA-256 differs from manifest.json (a shard of another "
                                 "build?)")


def manifest_summary(manifest: dict) -> dict:
    """What a run records of the data it was trained on (config.json `data_summary`): enough to
    say later whether other shards are the same build and, if not, how they differ."""
    splits = {}
    for name, info in manifest["splits"].items():
        digests = "\n".join(s.get("sha256", "") for s in info.get("shards", []))
        splits[name] = {"images": info.get("images"), "patients": info.get("patients"),
                        "shards": len(info.get("shards", [])),
                        "shards_sha256": hashlib.sha256(digests.encode()).hexdigest()}
    split = manifest.get("split", {})
    return {"split_method": split.get("method"), "split_seed": split.get("seed"),
            "size": manifest.get("size"), "encoding": manifest.get("encoding"),
            "synthetic": manifest.get("synthetic"), "splits": splits}


def summary_differences(trained: dict, other: dict) -> list[str]:
    """How two `manifest_summary`s differ, in words ("split seed 0 vs 1"); [] when the same build."""
    names = {"split_method": "split method", "split_seed": "split seed", "size": "image size",
             "encoding": "encoding", "synthetic": "synthetic"}
    found = [f"{text} {trained.get(key)} vs {other.get(key)}" for key, text in names.items()
             if trained.get(key) != other.get(key)]
    for split in sorted(set(trained.get("splits", {})) | set(other.get("splits", {}))):
        a, b = trained.get("splits", {}).get(split, {}), other.get("splits", {}).get(split, {})
        for key in ("images", "patients"):
            if a.get(key) != b.get(key):
                found.append(f"{split} {key} {a.get(key)} vs {b.get(key)}")
        if a.get("shards_sha256") != b.get("shards_sha256") and not any(
                f.startswith(f"{split} ") for f in found):
            found.append(f"{split} shard files differ")
    return found
