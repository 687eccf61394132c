"""The `w365` command (issue 2): every verb has --help, --json where scripts read, clear errors."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from w365.orchestration import catalogue
from w365.interfaces.cli import build_parser, main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "import"


def _verbs(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _verbs(sub, prefix + (name,))
            return
    yield prefix


def test_every_verb_has_help(capsys):
    verbs = list(_verbs(build_parser()))
    assert {("db", "upgrade"), ("demo", "load"), ("import",), ("jobs", "list"), ("run",), ("invoice", "preview"),
            ("slcl", "retry"), ("verify", "billing")} <= set(verbs)
    for verb in verbs:
        with pytest.raises(SystemExit) as exc:
            main([*verb, "--help"])
        assert exc.value.code == 0
        assert "usage: w365 " + " ".join(verb) in capsys.readouterr().out


def test_j1_jobs_list_json_is_the_catalogue(capsys):
    assert main(["jobs", "list", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [j["dag_id"] for j in jobs] == [j.dag_id for j in catalogue.JOBS] and len(jobs) == 18
    for j in jobs:
        assert {"dag_id", "name", "description", "schedule", "timezone", "paused_at_creation"} <= set(j)
    monthly_cl = next(j for j in jobs if j["dag_id"] == "generate_change_log_invoice_monthly")
    assert monthly_cl["paused_at_creation"] is True and monthly_cl["name"] == "Generate Change Log Invoice - Monthly Contracts"
    assert next(j for j in jobs if j["dag_id"] == "scheduled_update")["schedule"] == "5 0 * * *; 30 23 * * *"


def test_demo_import_and_verbs_on_a_store(store, capsys):
    assert main(["import", str(EXAMPLE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["subscriptions"] == 3
    assert main(["demo", "load", "--customers", "3", "--as-of", "2026-01-10", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["contracts"] == 6 and stats["lcls"] >= stats["subscriptions"]
    assert main(["run", "generate_full_cycle_invoice_monthly", "--as-of", "2026-01-10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["invoices"] and report["as_of"] == "2026-01-10"
    number = report["invoices"][0]["number"]
    assert main(["invoice", "show", number, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["number"] == number
    assert main(["verify", "ledger", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["drift"] == []
    assert main(["slcl", "list", "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


def test_errors_are_clear_exit_1_when_refused_2_when_the_argument_names_nothing(store, capsys, tmp_path):
    """issue 12: a refusal by a rule (bad rows) exits 1; an argument that names nothing exits 2."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "customers.csv").write_text("name,email\n,x@example.com\n")
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "customers.csv, row 2: name is empty" in err and "nothing was written" in err
    assert main(["invoice", "show", "INV-404"]) == 2
    assert "no invoice 'INV-404'" in capsys.readouterr().err


def test_python_dash_m_w365_works():
    out = subprocess.run([sys.executable, "-m", "w365", "jobs", "list", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 18
