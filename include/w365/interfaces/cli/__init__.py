"""The ``w365`` command for ops: ``w365 VERB ... [--json]`` (also ``python -m w365``).

Each module in ``COMMAND_MODULES`` adds its verbs with ``register(subparsers)``; a verb's
handler takes the parsed arguments and returns an exit code.

Errors are one line on stderr, ``error: ...``, never a traceback (``--debug`` adds it), and the
exit status says which kind (issue 12):

* 0 done; 1 refused or failed: a rule said no (``ValidationError``, an import with bad rows, a
  job that could not finish), the database went away, or an unexpected error (the line says so);
* 2 the command line cannot be run as written: a usage error, or an argument whose value is bad
  (not a number, out of bounds, an id or job that names nothing); the line names the argument;
* 130 interrupted (Ctrl-C): the transaction in progress was rolled back.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
import traceback
from typing import Any, Callable, NoReturn

from w365.core import limits
from w365.errors import NotFound, UsageError, W365Error

COMMAND_MODULES = (
    "w365.interfaces.cli.core",
    "w365.interfaces.cli.changes",
    "w365.interfaces.cli.billing",
    "w365.interfaces.cli.ops",
    "w365.interfaces.cli.reference",
)

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (exit 2) instead of the usage text and
    SystemExit: ``main`` prints it like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def arg(check: Callable[[Any, str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from a ``w365.core.limits`` check: its message, without a traceback,
    after ``argument --flag:``."""

    def parse(text: str) -> Any:
        try:
            return check(text, "")
        except limits.BadValue as exc:
            raise argparse.ArgumentTypeError(exc.detail) from None

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def text_arg(model: str, column: str) -> Callable[[str], str]:
    """Text no longer than the column ``model.column`` of ``w365.store.models``, without control
    characters. The models are imported only when such an argument is given (``w365 --help``
    and ``w365 jobs list`` stay quick)."""

    def check(value: str, what: str) -> str:
        from w365.store import models

        return limits.text(value, what, limits.column_length(getattr(getattr(models, model), column)))

    return arg(check)


def count_arg(low: int, high: int) -> Callable[[str], int]:
    return arg(lambda value, what: limits.whole(value, what, low, high))


def word_arg(choices: Any) -> Callable[[str], str]:
    """An argparse ``type`` for a word among ``choices`` (give ``choices=`` too) in any spelling the
    surfaces print: ``merge-failed``, ``merge_failed``, ``Merge Failed``, ``MERGE-FAILED`` (issue 13,
    ``w365.core.words``). An unknown word is left as typed for argparse's "invalid choice" error."""
    from w365.core import words

    names = list(choices)

    def parse(text: str) -> str:
        return words.choose(text, names) or text

    parse.__name__ = "word"
    return parse


# argparse types for the arguments most verbs share (bounds in w365.core.limits).
ID = arg(limits.record_id)
QUANTITY = arg(limits.quantity)
PRICE = arg(limits.price)
DATE = arg(limits.day)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="w365",
        description="w365: billing automation for Microsoft CSPs. The billing store is "
        "W365_DATABASE_URL (default: a SQLite file in $AIRFLOW_HOME).",
        epilog="Exit status: 0 done; 1 refused by a rule or failed (one `error:` line says why); "
        "2 bad command line or argument value; 130 interrupted.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    parser.add_argument("--debug", action="store_true", help="on an error, print the Python traceback too")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _first_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[:limit] + "..."


def _command(args: argparse.Namespace) -> str:
    return shlex.join(getattr(args, "command_words", None) or ["w365", str(getattr(args, "verb", ""))])


def describe(exc: BaseException, args: argparse.Namespace) -> tuple[str, int]:
    """The one line printed for ``exc`` and the exit status."""
    from sqlalchemy.exc import DBAPIError, StatementError

    from w365.store.retry import transient_reason
    from w365.core.money import MoneyError

    if isinstance(exc, (UsageError, NotFound)):
        return str(exc), EXIT_USAGE
    if isinstance(exc, W365Error):
        return str(exc), EXIT_REFUSED
    reason = transient_reason(exc)
    if reason is not None:  # retried already (w365.store.retry) where the work allows; it persisted
        what = "lost the database connection" if reason == "lost the database connection" else f"the database kept failing ({reason})"
        if getattr(args, "commits", None) == "per_batch":
            done = ("the job commits per batch: batches finished before are stored, the one in progress was rolled back "
                    "(nothing is half-written); rerun the same command to complete the work (a rerun is idempotent: "
                    "nothing is billed or changed twice)")
        else:
            done = "its transaction was rolled back, nothing was written; rerun it when the database answers"
        return f"{what} during `{_command(args)}`: {done}", EXIT_REFUSED
    if isinstance(exc, StatementError) and isinstance(exc.orig, (MoneyError, W365Error)):
        return f"refused by the billing store: {exc.orig}", EXIT_REFUSED
    if isinstance(exc, DBAPIError):
        return (f"database error ({type(exc.orig).__name__}): {_first_line(str(exc.orig))}; nothing of the transaction in "
                "progress was written (rerun with --debug for the traceback)"), EXIT_REFUSED
    return (f"unexpected error ({type(exc).__name__}: {_first_line(str(exc)) or 'no message'}); nothing of the transaction in "
            "progress was written; rerun with --debug for the traceback and report it"), EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args.command_words = ["w365", *argv]
    logging.basicConfig(  # logs go to stderr: stdout is for results (and --json)
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted; the transaction in progress was rolled back", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`w365 invoice list | head`): not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - every error is one line (issue 12); --debug shows the rest
        line, code = describe(exc, args)
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        print(f"error: {line}", file=sys.stderr)
        return code
