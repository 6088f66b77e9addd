"""Which training record each epoch reads, and in what order: a function of (seed, epoch) alone.

Pure NumPy: `reproduce.data` turns these orders into the tf.data pipeline, and docs/exactness.md's
numbers are measured on them without a single image (`mixing`).

A *pass* reads every training record (of this worker's shard files) once:
- the shard files' order is shuffled per (seed, pass). Pass 0: a random permutation. Pass p > 0:
  a random permutation *stratified* by pass p − 1 (`shard_orders`): its order is cut into
  STRATA blocks, and each block's shards are spread evenly over the whole of pass p. Independent
  permutations of ChestX-ray14's ~154 training shards leave consecutive passes correlated by
  chance (rank correlation up to 0.25 over 50 epochs; docs/exactness.md), stratified ones do not.
- CYCLE shard files at a time, in that order, are read round robin, one record at a time
  (tf.data's interleave; `pass_sequence`), so neighbouring records come from CYCLE different
  files; then
  `reproduce.data` shuffles records through config.shuffle_buffer (seeded by (seed, epoch)).

The training stream is pass 0, pass 1, …; epoch e of `records` records (steps × batch) is
- without --steps-per-epoch: the first `records` of pass e (whole batches; the few records left
  over differ from pass to pass);
- with --steps-per-epoch: stream positions [e·records, (e + 1)·records): each epoch continues where
  the last one stopped, so over ⌈n / records⌉ epochs every record is read once per pass.
Record ids are global: shard s's k-th record (manifest order) is offsets[s] + k.
"""
from __future__ import annotations

import dataclasses

import numpy as np

STRATA = 8  # our choice: blocks of pass p − 1 spread over pass p (docs/exactness.md)
CYCLE = 8  # our choice: shard files read round robin at a time
_ORDER_STREAM = 7  # NumPy streams [seed, pass, _ORDER_STREAM]: unlike the TF epoch seeds


@dataclasses.dataclass(frozen=True)
class Segment:
    """Positions [start, stop) of pass `pass_index`, read as part of one epoch."""
    pass_index: int
    start: int
    stop: int


def shard_orders(n_shards: int, seed: int, passes: int) -> list[np.ndarray]:
    """The shard files' order in passes 0 … passes − 1 (each a permutation of range(n_shards))."""
    orders = [np.random.default_rng([seed, 0, _ORDER_STREAM]).permutation(n_shards)]
    for p in range(1, passes):
        rng = np.random.default_rng([seed, p, _ORDER_STREAM])
        keys = np.empty(n_shards)
        for block in np.array_split(orders[-1], min(STRATA, n_shards)):
            # A random permutation of the block, spread evenly over [0, 1) with random jitter:
            # every stretch of pass p holds about as many shards from each block of pass p − 1.
            shuffled = rng.permutation(block)
            keys[shuffled] = (np.arange(len(block)) + rng.random(len(block))) / len(block)
        orders.append(np.argsort(keys, kind="stable"))
    return orders


def pass_sequence(counts, order) -> np.ndarray:
    """Shard index of every record of a pass, in reading order: tf.data's
    `interleave(cycle_length=CYCLE, block_length=1)` over the files in `order`, step by step
    (tensorflow/core/kernels/data/interleave_dataset_op.cc): CYCLE slots visited round robin,
    one record per visit; a slot whose file has run out is emptied and skipped once, and the
    next file opens in it when the visits come round again."""
    slots, files = [None] * CYCLE, iter(order)
    out, position, open_files, end_of_files = [], 0, 0, False
    while not end_of_files or open_files:
        slot = slots[position]
        if slot is not None and slot[1] > 0:
            out.append(slot[0])
            slot[1] -= 1
        elif slot is not None:  # its file has run out
            slots[position], open_files = None, open_files - 1
        elif not end_of_files:
            shard = next(files, None)
            end_of_files = shard is None
            if not end_of_files:
                slots[position], open_files = [int(shard), int(counts[shard])], open_files + 1
                continue  # the new file is read in this same visit
        position = (position + 1) % CYCLE
    return np.asarray(out, np.int64)


def _within_shard_index(sequence: np.ndarray) -> np.ndarray:
    """k for every position: how many records of the same shard came before it in the pass."""
    by_shard = np.argsort(sequence, kind="stable")
    grouped = sequence[by_shard]
    k = np.empty(len(sequence), np.int64)
    k[by_shard] = np.arange(len(sequence)) - np.searchsorted(grouped, grouped)
    return k


def epoch_segments(n: int, epoch: int, records: int, continuous: bool) -> list[Segment]:
    """The pass positions epoch `epoch` reads (see the module docstring)."""
    if records < 1 or n < 1:
        raise ValueError(f"an epoch needs records >= 1 from a split of n >= 1 (got {records}, {n})")
    if not continuous:
        if records > n:
            raise ValueError(f"an epoch of {records} records is longer than the pass of {n}")
        return [Segment(epoch, 0, records)]
    segments, position, end = [], epoch * records, (epoch + 1) * records
    while position < end:
        p, start = divmod(position, n)
        stop = min(n, start + end - position)
        segments.append(Segment(p, start, stop))
        position += stop - start
    return segments


def epoch_reads(counts, seed: int, epoch: int, records: int, continuous: bool):
    """[(shard files' order, start, stop)] of one epoch, one item per pass it touches: what
    `reproduce.data` reads (positions [start, stop) of the files interleaved in that order)."""
    segments = epoch_segments(int(np.sum(counts)), epoch, records, continuous)
    orders = shard_orders(len(counts), seed, segments[-1].pass_index + 1)
    return [(orders[s.pass_index], s.start, s.stop) for s in segments]


def epoch_records(counts, seed: int, epoch: int, records: int, continuous: bool) -> np.ndarray:
    """Global record ids of epoch `epoch` in reading order (before the record buffer's shuffle)."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    ids = []
    for order, start, stop in epoch_reads(counts, seed, epoch, records, continuous):
        sequence = pass_sequence(counts, order)
        ids.append((offsets[sequence] + _within_shard_index(sequence))[start:stop])
    return np.concatenate(ids)


def mixing(counts, seed: int, epochs: int) -> dict:
    """How far each pass's order is from the previous one's (one pass per epoch, no buffer):
    Spearman rank correlation of every record's position, and the share of the first tenth of
    pass e read again in the first tenth of pass e + 1 (0.1 = no memory of the last order)."""
    from scipy.stats import spearmanr

    n = int(np.sum(counts))
    positions = []
    for e in range(epochs):
        order = np.empty(n, np.int64)
        order[epoch_records(counts, seed, e, n, continuous=False)] = np.arange(n)
        positions.append(order)
    rho = [float(spearmanr(a, b)[0]) for a, b in zip(positions, positions[1:])]
    first = [float(np.mean(b[a < n // 10] < n // 10)) for a, b in zip(positions, positions[1:])]
    return {"records": n, "shards": len(counts), "epochs": epochs, "rank_correlation": rho,
            "max_abs_rank_correlation": max(map(abs, rho)),
            "mean_abs_rank_correlation": float(np.mean(np.abs(rho))),
            "first_tenth_again": float(np.mean(first))}
