"""Which real patients the phantom holds (our choice, all of it; `make.py` writes their images).

Whole real patients, seeded; each class gets at least max(3, N/100) patients (rare findings such as
Hernia are oversampled so the demo can learn them), the rest is a random draw of real patients
(No Finding included); patients with more than max(16, N/40) images are skipped so one patient
cannot fill the set. Then a local search swaps patients until every class has >= 1 (aim: >= 3)
positive images in train, val and test of BOTH the `paper` split (data_prep.split.patient_split with
the SAME seed: the Makefile passes $(SEED) to phantom and build) and the official lists written
beside the images (~77:23 train_val:test by patient, val = 1/8 of train_val as split.official_split
cuts it). Swaps keep every other patient's rank in the sorted patient list, so the seeded cut of
split.py keeps everyone else in place.

Given Google's expert labels (`expert`), the same walk and search also want, in the paper split's
TEST subset, a share (EXPERT_SHARES) of expert-labelled images and of radiologist positives of each
finding (a preference, never a hard floor), so `reproduce.report expert` has images to score.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data_prep.labels import EXPERT_FINDINGS
from data_prep.schema import CLASSES
from data_prep.split import OFFICIAL_VAL_FRACTION, PAPER_RATIOS, cut_patients

OFFICIAL_TEST_FRACTION = 0.23  # NIH test_list.txt: ~23% of the images (25,596 of 112,120)
TARGET_POSITIVES = 3  # our choice: aim for >= 3 positive images per class and subset (hard floor: 1)
# Our choice: in the paper test split, aim for N/30 expert-labelled images and N/240 radiologist
# positives of each EXPERT_FINDINGS (40 and 5 at the demo's 1,200: an AUC with a CI; at least 1).
EXPERT_SHARES = (1 / 30, 1 / 240, 1 / 240, 1 / 240, 1 / 240)


class PhantomError(ValueError):
    """The label file cannot give N images with every class in every subset."""


# ---- patient choice ------------------------------------------------------------------------------
def _patient_table(df: pd.DataFrame, cap: int, expert: pd.DataFrame | None):
    """Sorted patient ids, per patient [P, 14 + E] counts (positive images per class, then, with
    `expert`, expert-labelled images and radiologist positives per finding), images (<= cap)."""
    grouped = df.groupby("patient_id", sort=True)
    ids = np.asarray(sorted(grouped.groups))
    positives = grouped[list(CLASSES)].sum().loc[ids].to_numpy(np.int64)
    if expert is not None:
        rows = expert[expert["image_index"].isin(set(df["image_index"]))]
        wanted = rows.assign(images=1).groupby("patient_id")[["images", *EXPERT_FINDINGS]].sum()
        positives = np.hstack([positives, wanted.reindex(ids, fill_value=0).to_numpy(np.int64)])
    images = grouped.size().loc[ids].to_numpy(np.int64)
    keep = images <= cap
    return ids[keep], positives[keep], images[keep]


def _wants(n_columns: int, n_images: int):
    """Per scheme, subset and column [2, 3, C]: the counts aimed for, and which columns have the
    hard floor of 1 (the 14 classes everywhere; the expert columns only aim, in the paper test)."""
    want = np.full((2, 3, n_columns), float(TARGET_POSITIVES))
    want[:, :, len(CLASSES):] = 0
    shares = np.asarray(EXPERT_SHARES[:n_columns - len(CLASSES)])
    want[0, 2, len(CLASSES):] = np.maximum(1, np.round(n_images * shares))
    return want, np.arange(n_columns) < len(CLASSES)


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


def _construct(pos, images, n_images, target, seed, rng, want):
    """Chosen mask and official-test mask, picked rank by rank so every subset gets positives."""
    n = max(10, round(n_images / images.mean()))
    train_target = max(target, n_images // 100)  # oversample rare findings in train (our choice)
    targets = np.array([train_target, target, target])[:, None] * np.ones(pos.shape[1])
    targets[:, len(CLASSES):] = want[0, :, len(CLASSES):]  # expert images: paper test only
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
    out = np.zeros((2, 3, pos.shape[1]), np.int64)
    for s in range(2):
        for k in range(3):
            out[s, k] = pos[roles[s] == k].sum(0)
    return out


def _cost(counts, want, hard):
    """Empty cells of `hard` columns cost 100, each count short of `want` costs 1."""
    return 100.0 * ((counts == 0) & hard).sum(-1) + np.maximum(0, want - counts).sum(-1)


def _row_delta(counts, roles_p, diff, want, hard):
    """Cost change when both schemes' subset rows of patient p gain `diff` [M, C]."""
    total = 0.0
    for s in range(len(counts)):
        rows, aim = counts[s, roles_p[s]], want[s, roles_p[s]]  # [M, C]
        total = total + _cost(rows + diff, aim, hard) - _cost(rows, aim, hard)
    return total


def _best_move(pos, images, chosen, roles, counts, n_images, want, hard):
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
        gains.append(_row_delta(counts, roles[:, p], pos[q] - pos[p], want, hard) + 0.01 * size)
        kinds.append(np.zeros(len(p), bool)), ps.append(p), qs.append(q)
    a, b = at[:-1], at[1:]
    mixed = (roles[1, a] == 2) != (roles[1, b] == 2)
    a, b = np.where(roles[1, a] == 2, b, a)[mixed], np.where(roles[1, a] == 2, a, b)[mixed]
    gain = _row_delta(counts[1:], roles[1:, a], pos[b] - pos[a], want[1:], hard)  # a: train_val, b: test
    gain += _row_delta(counts[1:], np.full((1, len(a)), 2), pos[a] - pos[b], want[1:], hard)
    gains.append(gain)
    kinds.append(np.ones(len(a), bool)), ps.append(a), qs.append(b)
    gains = np.concatenate(gains)
    if not len(gains) or gains.min() >= -1e-9:
        return None
    i = int(np.argmin(gains))
    return bool(np.concatenate(kinds)[i]), int(np.concatenate(ps)[i]), int(np.concatenate(qs)[i])


def _polish(pos, images, chosen, test, roles, n_images, want, hard):
    """Apply the best rank-keeping move until none lowers the cost (in place)."""
    while (move := _best_move(pos, images, chosen, roles, _counts(pos, roles), n_images, want, hard)):
        exchange, p, q = move
        if not exchange:  # q takes p's place (and subsets)
            chosen[p], chosen[q], test[q], test[p] = False, True, test[p], False
            roles[:, q], roles[:, p] = roles[:, p].copy(), -1
        else:  # p: train_val -> test, q: test -> p's train_val subset
            test[p], test[q], roles[1, q], roles[1, p] = True, False, roles[1, p], 2


def choose_patients(df, n_images, seed, attempts=8, expert=None):
    """Patient ids and official-test patient ids such that the paper split and the official
    lists both give every class >= 1 positive image in train, val and test; with `expert`
    (`read_expert_labels`), patients of expert-labelled images are wanted in the paper test split."""
    rng = np.random.default_rng([seed, 1])
    ids, pos, images = _patient_table(df, max(16, n_images // 40), expert)
    want, hard = _wants(pos.shape[1], n_images)
    # Small sets (tests: 160 images from 270 patients) may need fewer positives or more patients.
    for grow, target in ((1.0, TARGET_POSITIVES), (1.0, 2), (1.0, 1), (1.3, 1), (1.6, 1)):
        for _ in range(attempts):
            chosen, test = _construct(pos, images, round(grow * n_images), target, seed, rng, want)
            roles = _roles(ids, chosen, test, seed)
            _polish(pos, images, chosen, test, roles, round(grow * n_images), want, hard)
            if _counts(pos, roles)[..., :len(CLASSES)].min() >= 1:
                return ids[chosen], ids[test & chosen]
    raise PhantomError(f"cannot give every class a positive in every subset with {n_images} images "
                       f"from {df['patient_id'].nunique()} patients; ask for more images")


