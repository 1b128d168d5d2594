"""The `detseg` command. Subcommands live in their own modules (bench.py, later parity, eval...):
each exposes HELP, add_arguments(parser) and main(args) -> exit code, and is imported only
when needed so that `detseg --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under detseg.cli
COMMANDS = {"bench": "bench", "eval": "eval"}


def _module(name: str):
    return importlib.import_module(f"detseg.cli.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detseg", description="detseg: detection and segmentation operators for PyTorch.")
    parser.add_argument("--version", action="store_true", help="print detseg's version and build info")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(name, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import detseg

        print(f"detseg {detseg.__version__}")
        for k, v in detseg.build_info().items():
            lines = str(v).strip().splitlines() or [""]
            print(f"  {k}: {lines[0]}")
            for line in lines[1:]:
                print(f"      {line.strip()}")
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_module(args.command).main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
