"""One vocabulary on every surface (issue 13).

The store's words are snake_case (``merge_failed``, ``awaiting_merge``, ``on_renewal``); the CLI's
options are kebab-case (``--status merge-failed``); the pages show labels (``Merge Failed``). Each
surface accepts every one of those spellings, in any case, and also prints them, so whatever a
person copies from one place works in another:

    >>> canonical("Merge Failed") == canonical("merge-failed") == canonical("MERGE_FAILED") == "merge_failed"
    True

Standard library only (the CLI imports it while parsing its arguments).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

_SEPARATORS = re.compile(r"[\s_-]+")


def canonical(value: Any) -> str:
    """``value`` as the store spells it: lower case, words joined by ``_``."""
    return _SEPARATORS.sub("_", str(value).strip().lower()).strip("_")


def kebab(value: Any) -> str:
    """``value`` as the CLI's options spell it: ``merge-failed``."""
    return canonical(value).replace("_", "-")


def label(value: Any) -> str:
    """``value`` as the pages show it: ``Merge Failed``."""
    return canonical(value).replace("_", " ").title()


def choose(value: Any, choices: Iterable[str]) -> str | None:
    """The member of ``choices`` that ``value`` names in any spelling, or None."""
    wanted = canonical(value)
    return next((c for c in choices if canonical(c) == wanted), None)


def spellings(value: Any) -> list[str]:
    """The spellings of a word people see: store, CLI and label (for messages and help)."""
    return list(dict.fromkeys([canonical(value), kebab(value), label(value)]))
