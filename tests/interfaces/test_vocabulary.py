"""One vocabulary on every surface (issue 13, item 6; SPEC C9, C13).

The store spells a status ``merge_failed``, the CLI's options ``merge-failed``, the pages
``Merge Failed``. Whatever one surface prints, each surface accepts back: the CLI here, the pages
in tests/interfaces/test_web.py (``test_slcl_filter_takes_every_spelling_it_prints``), the portal's request
words here. Fast: no Airflow.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select, update

from w365.core import words
from w365.interfaces.cli import main

SPELLINGS = ["merge-failed", "merge_failed", "Merge Failed", "MERGE_FAILED", "Merge-Failed", " merge  failed "]


def test_words_have_one_canonical_spelling() -> None:
    """issue 13: every spelling a surface prints maps to the store's word, and back."""
    for s in SPELLINGS:
        assert words.canonical(s) == "merge_failed" and words.kebab(s) == "merge-failed" and words.label(s) == "Merge Failed"
    assert words.choose("On Renewal", ("custom", "on-renewal")) == "on-renewal"
    assert words.choose("awaiting merge", ("pending", "awaiting_merge")) == "awaiting_merge"
    assert words.choose("archived", ("pending", "merge_failed")) is None
    assert words.spellings("awaiting_merge") == ["awaiting_merge", "awaiting-merge", "Awaiting Merge"]


@pytest.fixture
def failed_slcl(store) -> int:  # type: ignore[no-untyped-def]
    """A demo store with one Merge Failed and some pending/awaiting scheduled changes."""
    from w365.store.models import ScheduledLicenseChangeLog, SLCLStatus
    from w365.interfaces.demo import DemoSpec, load_demo

    with store.session() as s:
        load_demo(s, DemoSpec(timezone="America/Los_Angeles", as_of=date(2026, 1, 1)))
        first = s.scalar(select(ScheduledLicenseChangeLog.id).order_by(ScheduledLicenseChangeLog.id))
        s.execute(update(ScheduledLicenseChangeLog).where(ScheduledLicenseChangeLog.id == first)
                  .values(status=SLCLStatus.MERGE_FAILED, reason="contract expired"))
        s.commit()
    return int(first)


def test_cli_accepts_every_spelling_of_a_status_and_what_it_prints(failed_slcl: int, capsys) -> None:  # type: ignore[no-untyped-def]
    """issue 13: `w365 slcl list --status` takes merge-failed as before, and merge_failed (what
    it prints), Merge Failed (what the pages print), any case; its output's statuses go back in."""
    for spelling in SPELLINGS:
        assert main(["slcl", "list", "--status", spelling, "--json"]) == 0, spelling
        rows = json.loads(capsys.readouterr().out)
        assert [(r["id"], r["status"]) for r in rows] == [(failed_slcl, "merge_failed")], spelling
    assert main(["slcl", "list", "--json"]) == 0
    printed = {r["status"] for r in json.loads(capsys.readouterr().out)}
    assert "merge_failed" in printed and len(printed) >= 2
    for status in printed:  # what the CLI printed is accepted back, as printed and as a label
        for spelling in (status, words.label(status)):
            assert main(["slcl", "list", "--status", spelling, "--json"]) == 0, spelling
            assert {r["status"] for r in json.loads(capsys.readouterr().out)} == {status}
    assert main(["slcl", "list", "--status", "Awaiting Merge"]) == 0  # the table, too
    capsys.readouterr()
    assert main(["slcl", "list", "--status", "merged"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'merged'" in err and "'merge-failed'" in err


def test_cli_other_words_take_every_spelling(store, capsys) -> None:  # type: ignore[no-untyped-def]
    """issue 13: --effective on-renewal / on_renewal / On Renewal, --format HTML: the same rule."""
    from w365.interfaces.cli import build_parser

    parser = build_parser()
    for spelling in ("on-renewal", "on_renewal", "On Renewal", "ON-RENEWAL"):
        args = parser.parse_args(["subscription", "change", "1", "--quantity", "3", "--effective", spelling])
        assert args.effective == "on-renewal", spelling
    for spelling in ("HTML", "html", " Html "):
        assert parser.parse_args(["invoice", "export", "INV-000001", "--format", spelling]).format == "html"
    assert main(["subscription", "change", "1", "--effective", "someday"]) == 2
    assert "invalid choice: 'someday'" in capsys.readouterr().err


def test_portal_takes_every_spelling_of_its_words() -> None:
    """issue 13, SPEC C13: the portal's ``effective`` is on_renewal in its schema; on-renewal and
    On Renewal mean the same; an unknown word is still refused (422 in the app)."""
    from pydantic import ValidationError

    from w365.interfaces.portal import ChangeIn

    for spelling in ("on_renewal", "on-renewal", "On Renewal"):
        assert ChangeIn(quantity=3, effective=spelling).effective == "on_renewal"
    assert ChangeIn(action="Deactivate").action == "deactivate"
    with pytest.raises(ValidationError):
        ChangeIn(effective="tomorrow")
