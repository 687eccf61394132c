"""Named points inside the jobs where a test can pause one job to force an interleaving with
another, deterministically (issue 11: race conditions are tested with a hook or a lock held by
a second connection, never with sleeps). In production nothing is installed and ``at`` is a
dictionary lookup."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

_installed: dict[str, Callable[[], None]] = {}


def at(point: str) -> None:
    """Run what a test installed at ``point``, if anything."""
    fn = _installed.get(point)
    if fn is not None:
        fn()


@contextmanager
def installed(point: str, fn: Callable[[], None]) -> Iterator[None]:
    _installed[point] = fn
    try:
        yield
    finally:
        _installed.pop(point, None)
