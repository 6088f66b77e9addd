"""Train one Table I model (§IV.B): backbone + 14-way head, Adam, on the TFRecords of data_prep.

    python -m reproduce.train --data SHARDS --model densenet121 --loss ewl --preset paper --out RUN

RUN/ gets config.json (the resolved Config + preset, data, manifest hash, provenance),
history.csv (one row per epoch: loss, val_loss, val_mean_auc, val_auc_<Class>), best.keras (best
validation mean AUC — our choice, the paper does not say which checkpoint it evaluated),
last.keras, tensorboard/, and backup/ while the run is unfinished. Started again with the same
command, a killed run continues after its last completed epoch and ends with the weights an
uninterrupted run would have (bit for bit on a CPU with --deterministic).
"""
from __future__ import annotations

import sys

from common import cli, quiet
from reproduce import config as config_module
from reproduce.config import PRESETS, preset


def build_parser():
    p = cli.make_parser("reproduce.train", __doc__)
    p.add_argument("--data", required=True, metavar="SHARDS", help="TFRecord folder of data_prep.build (manifest.json)")
    p.add_argument("--out", required=True, help="run folder (created; an unfinished run resumes)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="starting values of every field: paper (the paper's settings), demo, smoke")
    p.add_argument("--verify-shards", action="store_true",
                   help="also check every shard's SHA-256 against manifest.json (size and record "
                        "count are always checked)")
    config_module.add_arguments(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version end here, before TensorFlow

    def body():
        quiet.start_tensorflow()
        from reproduce.engine.training import train

        config = preset(args.preset).override(**config_module.overrides(args))
        history = train(config, args.data, args.out, preset_name=args.preset,
                        verify_checksums=args.verify_shards)
        if history.empty:  # a non-chief worker: its history is the chief's, written there
            print("worker finished; the chief wrote the run folder")
            return
        last = history.iloc[-1]
        print(f"{args.out}: {len(history)} epochs, last val mean AUC {last['val_mean_auc']:.4f}, "
              f"best {history['val_mean_auc'].max():.4f}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
