"""The ``seqpack`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqpack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="pack a built-in synthetic dataset with every strategy and compare"
    )
    demo.add_argument("--sequences", type=int, default=100_000)
    demo.add_argument("--max-length", type=int, default=4096)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "demo":
        from seqpack.demo import run
        from seqpack.errors import SeqpackError

        try:
            print(run(sequences=args.sequences, max_length=args.max_length, seed=args.seed))
        except SeqpackError as exc:
            print(f"seqpack demo: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
