"""The ``w365`` command for ops: ``w365 VERB ... [--json]`` (also ``python -m w365``).

Each module in ``COMMAND_MODULES`` adds its verbs with ``register(subparsers)``; a verb's
handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from w365.errors import W365Error

COMMAND_MODULES = (
    "w365.cli.core",
    "w365.cli.changes",
    "w365.cli.billing",
    "w365.cli.ops",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="w365",
        description="w365: billing automation for Microsoft CSPs. The billing store is "
        "W365_DATABASE_URL (default: a SQLite file in $AIRFLOW_HOME).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(  # logs go to stderr: stdout is for results (and --json)
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        return int(args.handler(args) or 0)
    except W365Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
