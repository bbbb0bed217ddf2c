"""The command line: `python -m kit COMMAND ...` (see `python -m kit --help`)."""
from __future__ import annotations

import argparse
import sys


def _data(args) -> int:
    from kit import data

    if args.action == "fetch":
        folder = data.fetch(args.name, args.root)
        print(f"{args.name}: ready and verified in {folder}")
    else:  # stats
        train = data.load(args.name, "train", args.root)
        print(data.stats(train))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from kit.data import NAMES

    parser = argparse.ArgumentParser(prog="python -m kit", description="Drill-Down Kit command line")
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("data", help="fetch and verify a data set, or print its statistics")
    d.add_argument("action", choices=("fetch", "stats"))
    d.add_argument("name", choices=NAMES)
    d.add_argument("--root", help="data folder (default: $KIT_DATA, else ~/.cache/drill-down-kit)")
    d.set_defaults(run=_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kit.data import DataError

    try:
        return args.run(args)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
