"""Train the independent classifier that judges a learned flow's samples (issue 15, item 6).

A small CNN on the real training images (never generated ones), saved as safetensors with its
config, the command, its training time and its measured test accuracy in the metadata.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/train_classifier.py --data fashion-mnist \\
        --out benchmarks/data/fashion-classifier.safetensors
    python benchmarks/train_classifier.py --data digits --epochs 30 --channels 16,32 \\
        --out benchmarks/data/digits-classifier.safetensors

One thread by default (deterministic on the CPU for a given seed).
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from mmmi_dsl.cli.args import integer, integers, positive
from mmmi_dsl.flows.classifier import KINDS, reference_data, save_classifier, train_classifier


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=KINDS, default="fashion-mnist")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--channels", type=integers(1, empty=False), default=(16, 32, 64),
                   help="conv widths, one halving each")
    p.add_argument("--features", type=integer(1), default=128, help="width of the penultimate (feature) layer")
    p.add_argument("--epochs", type=integer(1), default=5)
    p.add_argument("--batch-size", type=integer(1), default=128)
    p.add_argument("--lr", type=positive, default=2e-3)
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--threads", type=integer(1), default=1)
    p.add_argument("--limit", type=integer(1), default=None, help="train on the first LIMIT images only (quick runs)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    train, test = reference_data(args.data)
    model, record = train_classifier(train, test, channels=tuple(args.channels), features=args.features,
                                     epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                     limit=args.limit, log=lambda line: print(line, flush=True))
    record["reference"] = args.data
    record["command"] = "python benchmarks/train_classifier.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    save_classifier(args.out, model, record)
    per_class = ", ".join(f"{k}: {a:.1%}" for k, a in enumerate(record["test_accuracy_per_class"]))
    print(f"wrote {args.out}: test accuracy {record['test_accuracy']:.2%} ({per_class}); "
          f"{record['train_seconds']:.0f} s on {args.threads} thread(s)")
    return record


if __name__ == "__main__":
    main()
