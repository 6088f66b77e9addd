"""A synthetic ChestX-ray14 ("phantom") in the NIH layout, labelled with REAL label rows.

    python -m data_prep.phantom --labels Data_Entry_2017_v2020.csv.gz --out DIR --images N --seed S
                                [--strength X] [--workers W]

No NIH image can be downloaded here, so `make demo` runs the whole pipeline on drawn images. DIR gets
images/<Image Index> (1024² PNG, §IV.A), Data_Entry_2017_v2020.csv (the real lines of the chosen
images, OriginalImage size set to 1024,1024), train_val_list.txt / test_list.txt, BBox_List_2017.csv
(one box per drawn finding, NIH format) and phantom.json.

Patient choice (all our choice): whole real patients, seeded; each class gets at least
max(3, N/100) patients (rare findings such as Hernia are oversampled ~8x so the demo can learn
them), the rest is a random draw of real patients (No Finding included); patients with more than
max(8, N/40) images are skipped so one patient cannot fill the set. Then a local search swaps
patients until every class has >= 1 (aim: >= 3) positive images in train, val and test of BOTH the
`paper` split (data_prep.split.patient_split with the SAME seed: the Makefile passes $(SEED) to
phantom and build) and the official lists written here (~77:23 train_val:test by patient, val =
1/8 of train_val as split.official_split cuts it). Swaps keep every other patient's rank in the
sorted patient list, so the seeded cut of split.py keeps everyone else in place.

Drawing (our choice): a chest (body, lungs, ribs, lung markings, mediastinum, heart, diaphragm)
with per-image brightness, contrast, pose and size, drawn at 256² and upscaled, plus 1024² noise.
Each positive finding adds a signature scaled by `strength` × U(0.5, 1.5) (0 = no signal: the
image is then byte-identical to the same image without findings). Signatures are >= 1/16 of the
image so they survive the demo's 64² INTER_AREA downscale.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from data_prep.labels import class_counts, read_bbox_file, read_label_file
from data_prep.schema import CLASSES
from data_prep.phantom_draw import DEFAULT_STRENGTH, SIZE, render
from data_prep.split import OFFICIAL_VAL_FRACTION, PAPER_RATIOS, cut_patients, official_split, patient_split

OFFICIAL_TEST_FRACTION = 0.23  # NIH test_list.txt: ~23% of the images (25,596 of 112,120)
TARGET_POSITIVES = 3  # our choice: aim for >= 3 positive images per class and subset (hard floor: 1)
RGBA_FRACTION = 0.02  # our choice: NIH ships a few RGBA files; we also add 16-bit ones (same share)
U16_FRACTION = 0.02
PNG_OPTS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]  # our choice: fastest measured (37 ms, 0.57 MB)


class PhantomError(ValueError):
    """The label file cannot give N images with every class in every subset."""


# ---- patient choice ------------------------------------------------------------------------------
def _patient_table(df: pd.DataFrame, cap: int):
    """Sorted patient ids, positive-image counts per class [P, 14], images per patient (<= cap)."""
    grouped = df.groupby("patient_id", sort=True)
    ids = np.asarray(sorted(grouped.groups))
    positives = grouped[list(CLASSES)].sum().loc[ids].to_numpy(np.int64)
    images = grouped.size().loc[ids].to_numpy(np.int64)
    keep = images <= cap
    return ids[keep], positives[keep], images[keep]


def _walk(pos, images, n_keep, rank_subset, targets, widen, rng):
    """Keep n_keep of the sorted items (split.py's seeded cut sends rank r to rank_subset[r]):
    for each rank pick, from a window of the next items, the one that best fills that subset's
    missing positives (random if none helps); skipped items are dropped. Returns kept indices."""
    need = np.array(targets, float)  # [3 subsets, 14] positive images still wanted
    kept, cur, base = [], 0, max(1, len(images) // max(1, n_keep))
    for r in range(n_keep):
        k = rank_subset[r]
        slack = len(images) - cur - (n_keep - r)
        stop = cur + 1 + min(slack, base * widen[k])
        gain = np.minimum(pos[cur:stop], need[k]).sum(1) / np.sqrt(images[cur:stop])
        if gain.max() > 0:
            i = cur + int(np.argmax(gain * rng.uniform(0.8, 1.2, len(gain))))
        else:  # the real mix: a random patient at the usual spacing
            i = cur + int(rng.integers(0, min(stop - cur, base)))
        kept.append(i)
        need[k] = np.maximum(0, need[k] - pos[i])
        cur = i + 1
    return np.asarray(kept, int)


def _subset_of_rank(n, ratios, seed):
    """Subset index of each rank 0..n-1 under split.py's seeded cut."""
    out = np.empty(n, int)
    for k, group in enumerate(cut_patients(np.arange(n), ratios, seed)):
        out[group] = k
    return out


def _construct(pos, images, n_images, target, seed, rng):
    """Chosen mask and official-test mask, picked rank by rank so every subset gets positives."""
    n = max(10, round(n_images / images.mean()))
    train_target = max(target, n_images // 100)  # oversample rare findings in train (our choice)
    targets = np.array([train_target, target, target])[:, None] * np.ones(pos.shape[1])
    kept = _walk(pos, images, n, _subset_of_rank(n, PAPER_RATIOS, seed), targets, (1, 6, 3), rng)
    chosen = np.zeros(len(images), bool)
    chosen[kept] = True
    # Official lists: walk the chosen patients; skipped ones form test_list (~23% of patients).
    n_tv = len(kept) - round(OFFICIAL_TEST_FRACTION * len(kept))
    val_fraction = (OFFICIAL_VAL_FRACTION, 1 - OFFICIAL_VAL_FRACTION)
    tv_subset = 1 - _subset_of_rank(n_tv, val_fraction, seed)  # 1 = val, 0 = train
    tv = _walk(pos[kept], images[kept], n_tv, tv_subset, targets, (1, 2, 1), rng)
    test = chosen.copy()
    test[kept[tv]] = False
    return chosen, test


def _roles(ids, chosen, test, seed):
    """Subset index (0 train, 1 val, 2 test) of each chosen patient under both splits, cut by
    split.py's own `_cut_patients` so the prediction equals what build will do."""
    paper = np.full(len(ids), -1)
    for k, group in enumerate(cut_patients(ids[chosen], PAPER_RATIOS, seed)):
        paper[np.searchsorted(ids, group)] = k
    official = np.where(test & chosen, 2, -1)
    tv = ids[chosen & ~test]
    val, train = cut_patients(tv, (OFFICIAL_VAL_FRACTION, 1 - OFFICIAL_VAL_FRACTION), seed)
    official[np.searchsorted(ids, train)], official[np.searchsorted(ids, val)] = 0, 1
    return np.stack([paper, official])  # [2 schemes, P]


def _counts(pos, roles):
    out = np.zeros((2, 3, len(CLASSES)), np.int64)
    for s in range(2):
        for k in range(3):
            out[s, k] = pos[roles[s] == k].sum(0)
    return out


def _cost(counts):
    """Empty subset-class cells cost 100, each positive short of TARGET_POSITIVES costs 1."""
    return 100.0 * (counts == 0).sum(-1) + np.maximum(0, TARGET_POSITIVES - counts).sum(-1)


def _row_delta(counts, roles_p, diff):
    """Cost change when both schemes' subset rows of patient p gain `diff` [M, 14]."""
    total = 0.0
    for s in range(len(counts)):
        rows = counts[s, roles_p[s]]  # [M, 14]
        total = total + _cost(rows + diff) - _cost(rows)
    return total


def _best_move(pos, images, chosen, roles, counts, n_images):
    """Best rank-keeping move: replace chosen p by an unchosen q lying between p's chosen
    neighbours (q inherits p's subsets), or swap official test/train_val roles of two chosen
    patients adjacent in id order (no train_val patient between them, so no rank moves)."""
    at = np.flatnonzero(chosen)
    free = np.flatnonzero(~chosen)
    nxt = np.searchsorted(at, free)
    excess = abs(images[chosen].sum() - n_images)
    kinds, ps, qs, gains = [], [], [], []
    for side in (nxt - 1, nxt):
        ok = (side >= 0) & (side < len(at))
        p, q = at[side[ok]], free[ok]
        size = np.abs(images[chosen].sum() + images[q] - images[p] - n_images) - excess
        gains.append(_row_delta(counts, roles[:, p], pos[q] - pos[p]) + 0.01 * size)
        kinds.append(np.zeros(len(p), bool)), ps.append(p), qs.append(q)
    a, b = at[:-1], at[1:]
    mixed = (roles[1, a] == 2) != (roles[1, b] == 2)
    a, b = np.where(roles[1, a] == 2, b, a)[mixed], np.where(roles[1, a] == 2, a, b)[mixed]
    gain = _row_delta(counts[1:], roles[1:, a], pos[b] - pos[a])  # a: train_val, b: test
    gains.append(gain + _row_delta(counts[1:], np.full((1, len(a)), 2), pos[a] - pos[b]))
    kinds.append(np.ones(len(a), bool)), ps.append(a), qs.append(b)
    gains = np.concatenate(gains)
    if not len(gains) or gains.min() >= -1e-9:
        return None
    i = int(np.argmin(gains))
    return bool(np.concatenate(kinds)[i]), int(np.concatenate(ps)[i]), int(np.concatenate(qs)[i])


def _polish(pos, images, chosen, test, roles, n_images):
    """Apply the best rank-keeping move until none lowers the cost (in place)."""
    while (move := _best_move(pos, images, chosen, roles, _counts(pos, roles), n_images)):
        exchange, p, q = move
        if not exchange:  # q takes p's place (and subsets)
            chosen[p], chosen[q], test[q], test[p] = False, True, test[p], False
            roles[:, q], roles[:, p] = roles[:, p].copy(), -1
        else:  # p: train_val -> test, q: test -> p's train_val subset
            test[p], test[q], roles[1, q], roles[1, p] = True, False, roles[1, p], 2


def choose_patients(df, n_images, seed, attempts=8):
    """Patient ids and official-test patient ids such that the paper split and the official
    lists both give every class >= 1 positive image in train, val and test."""
    rng = np.random.default_rng([seed, 1])
    ids, pos, images = _patient_table(df, cap=max(16, n_images // 40))
    # Small sets (tests: 160 images from 270 patients) may need fewer positives or more patients.
    for grow, target in ((1.0, TARGET_POSITIVES), (1.0, 2), (1.0, 1), (1.3, 1), (1.6, 1)):
        for _ in range(attempts):
            chosen, test = _construct(pos, images, round(grow * n_images), target, seed, rng)
            roles = _roles(ids, chosen, test, seed)
            _polish(pos, images, chosen, test, roles, round(grow * n_images))
            if _counts(pos, roles).min() >= 1:
                return ids[chosen], ids[test & chosen]
    raise PhantomError(f"cannot give every class a positive in every subset with {n_images} images "
                       f"from {df['patient_id'].nunique()} patients; ask for more images")


# ---- files ---------------------------------------------------------------------------------------
def _write_one(job):
    """Render one image and write it as 8-bit gray, RGBA or 16-bit PNG; returns its boxes."""
    path, image_index, labels, seed, strength, kind = job
    img, boxes = render(image_index, labels, seed, strength)
    if kind == "rgba":  # NIH's few RGBA files are opaque with R = G = B
        img = cv2.merge([img, img, img, np.full_like(img, 255)])
    elif kind == "u16":  # v * 257 maps 0..255 onto 0..65535 exactly (images.py reads it back)
        img = img.astype(np.uint16) * 257
    if not cv2.imwrite(str(path), img, PNG_OPTS):
        raise OSError(f"{path}: cannot write image")
    return [(image_index, *b) for b in boxes]


def _raw_lines(labels_path: Path, keep: set) -> list[str]:
    """The real label-file lines of the kept images, OriginalImage size set to 1024,1024."""
    opener = gzip.open if labels_path.suffix == ".gz" else open
    with opener(labels_path, "rt") as f:
        lines = f.read().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        if fields[0] in keep:
            fields[7:9] = [str(SIZE), str(SIZE)]
            out.append(",".join(fields))
    return out


def _formats(names, seed):
    rng = np.random.default_rng([seed, 3])
    order = rng.permutation(len(names))
    n_rgba, n_u16 = (max(1, round(f * len(names))) for f in (RGBA_FRACTION, U16_FRACTION))
    kinds = np.array(["gray"] * len(names), object)
    kinds[order[:n_rgba]], kinds[order[n_rgba:n_rgba + n_u16]] = "rgba", "u16"
    return kinds


def _render_all(jobs, workers):
    bar = dict(total=len(jobs), desc="phantom", unit="img", mininterval=1)
    if workers <= 1:
        return [b for job in tqdm(jobs, **bar) for b in _write_one(job)]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:  # spawn: safe beside TF threads
        return [b for boxes in tqdm(pool.imap(_write_one, jobs, chunksize=8), **bar) for b in boxes]


def make_phantom(labels_path, out_dir, n_images: int, seed: int, strength: float = DEFAULT_STRENGTH,
                 workers: int = 1) -> Path:
    """Write the phantom ChestX-ray14 into out_dir (see the module docstring); returns out_dir."""
    labels_path, out = Path(labels_path), Path(out_dir)
    if strength < 0:
        raise PhantomError(f"strength must be >= 0, got {strength}")
    df = read_label_file(labels_path)
    patients, test_patients = choose_patients(df, n_images, seed)
    sub = df[df["patient_id"].isin(set(patients.tolist()))].sort_values("image_index").reset_index(drop=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = sub["image_index"].tolist()
    kinds = _formats(names, seed)
    jobs = [(out / "images" / n, n, row, seed, strength, k)
            for n, row, k in zip(names, sub[list(CLASSES)].to_numpy(), kinds)]
    boxes = _render_all(jobs, workers)
    (out / "Data_Entry_2017_v2020.csv").write_text("\n".join(_raw_lines(labels_path, set(names))) + "\n")
    is_test = sub["patient_id"].isin(set(test_patients.tolist()))
    (out / "test_list.txt").write_text("".join(f"{n}\n" for n in sub["image_index"][is_test]))
    (out / "train_val_list.txt").write_text("".join(f"{n}\n" for n in sub["image_index"][~is_test]))
    rows = [f"{n},{'Infiltrate' if c == 'Infiltration' else c},{x:.3f},{y:.3f},{w:.3f},{h:.3f}"
            for n, c, x, y, w, h in boxes]
    (out / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + "".join(r + "\n" for r in rows))
    _check_and_describe(out, seed, strength, kinds)
    return out


def _check_and_describe(out: Path, seed, strength, kinds):
    """Re-read what was written with the package's own readers and splitters; write phantom.json."""
    sub = read_label_file(out / "Data_Entry_2017_v2020.csv")
    read_bbox_file(out / "BBox_List_2017.csv")
    coverage = {"paper": patient_split(sub, seed), "official": official_split(sub, out, seed)}
    for method, splits in coverage.items():
        for name, frame in splits.items():
            empty = [c for c, v in class_counts(frame).items() if v == 0]
            if empty:
                raise PhantomError(f"{out}: {method} {name} has no positive for {empty}")
    meta = {"synthetic": True, "seed": seed, "strength": strength, "images": len(sub),
            "patients": int(sub["patient_id"].nunique()), "positives": class_counts(sub),
            "formats": {k: int((kinds == k).sum()) for k in ("gray", "rgba", "u16")},
            "split_positives": {m: {n: class_counts(f) for n, f in s.items()} for m, s in coverage.items()},
            "description": "Synthetic chest radiographs drawn by data_prep.phantom, labelled with real "
                           "ChestX-ray14 rows; not medical images."}
    (out / "phantom.json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="Data_Entry_2017_v2020.csv[.gz]")
    parser.add_argument("--out", required=True, help="output folder (NIH layout)")
    parser.add_argument("--images", type=int, default=1200, help="about this many images")
    parser.add_argument("--seed", type=int, default=0, help="use the SEED that data_prep.build gets")
    parser.add_argument("--strength", type=float, default=DEFAULT_STRENGTH, help="0 = no signal")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        out = make_phantom(args.labels, args.out, args.images, args.seed, args.strength, args.workers)
    except (ValueError, OSError) as err:  # LabelFileError, PhantomError, SplitError: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "phantom.json").read_text())
    print(f"{meta['images']} images of {meta['patients']} patients -> {out} (strength {args.strength})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
