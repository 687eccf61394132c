"""Issue 12: hostile and careless input on every surface but the import (tests/interfaces/test_import_hostile.py)
gets one clear line naming the argument or record, the right exit status or HTTP status, no
traceback, and nothing written, on SQLite and PostgreSQL alike: the CLI verbs, the portal API,
the provider sync, and a database connection lost in the middle of a run.

Exit status (w365.interfaces.cli): 2 = the command line cannot run as written (a usage error, a bad value,
an id or job that names nothing); 1 = refused by a rule, or failed.
"""

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

import factories as f
from pc_server import pc, pc_subscription  # noqa: F401 - pc is a fixture
from conftest import one_error
from w365 import hooks
from w365.orchestration import jobs
from w365.orchestration.catalogue import JobKind
from w365.interfaces.cli import main
from w365.store.models import Invoice, JobException, LicenseChangeLog, ProviderKind, Subscription
from w365.billing.invoicing import dispatcher
from w365.interfaces.portal import create_app, issue_token
from w365.integrations.sync import sync_subscriptions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "import"


pytestmark = pytest.mark.usefixtures("root_logging")  # main() reconfigures logging


row_counts = f.row_counts


@pytest.fixture
def loaded(store, capsys):
    """The example tenant, loaded through the CLI; returns the id of Business Basic - Fabrikam."""
    assert main(["import", str(EXAMPLE)]) == 0
    capsys.readouterr()
    with store.session() as s:
        return s.scalar(select(Subscription.id).where(Subscription.name == "Business Basic - Fabrikam"))


# --------------------------------------------------------------------------------------------
# w365 subscription change

HELP = "(see `w365 subscription change --help`)"
CHANGE_CASES = [
    (["--selling-price", "abc"], f"error: argument --selling-price: 'abc' is not a decimal number {HELP}", 2),
    (["--selling-price", "NaN"], f"error: argument --selling-price: 'NaN' is not a finite number {HELP}", 2),
    (["--selling-price", "1.0000001"], f"error: argument --selling-price: 1.0000001 has 7 decimal places; at most 6 are allowed {HELP}", 2),
    (["--selling-price", "1e30"], f"error: argument --selling-price: 1e30 is above the maximum of 1,000,000,000 {HELP}", 2),
    (["--cost-price", "-1"], f"error: argument --cost-price: -1 is negative {HELP}", 2),
    (["--quantity", "3000000000"], f"error: argument --quantity: 3000000000 is above the maximum of 1,000,000 licences {HELP}", 2),
    (["--quantity", "1e20"], f"error: argument --quantity: '1e20' is not a whole number {HELP}", 2),
    (["--quantity", "12", "--effective", "custom", "--date", "9999-12-31"],
     f"error: argument --date: 9999-12-31 is after 2099-12-31, the latest date w365 accepts {HELP}", 2),
    (["--quantity", "12", "--effective", "custom", "--date", "2026-02-30"], f"error: argument --date: '2026-02-30' is not a date (YYYY-MM-DD) {HELP}", 2),
    (["--sales-unit", "X" * 300], f"error: argument --sales-unit: is 300 characters long; at most 24 are allowed {HELP}", 2),
    (["--quantity", "12", "--by", "me\x1b[2J"], f"error: argument --by: 'me\\x1b[2J' contains the control character U+001B at character 3 {HELP}", 2),
    (["--quantity", "12", "--frobnicate"], "error: unrecognized arguments: --frobnicate (see `w365 --help`)", 2),
    # Within each bound, but what it would bill per sales unit does not fit an invoice line: a rule.
    (["--quantity", "1000000", "--selling-price", "2000000"],
     "error: subscription #{id} (Business Basic - Fabrikam): quantity x price 1,000,000 x 2,000,000 = 2,000,000,000,000 is above "
     "the maximum of 1,000,000,000,000 per sales unit", 1),
]


@pytest.mark.parametrize("argv, expected, code", CHANGE_CASES, ids=[" ".join(c[0])[:40] for c in CHANGE_CASES])
def test_issue12_c1_subscription_change_refuses_bad_values_in_one_line(store, loaded, capsys, argv, expected, code):
    """issue 12 (SPEC C1, S3): `w365 subscription change` with a bad value: one `error:` line
    naming the argument (exit 2) or the rule that refused it (exit 1); nothing written, on
    SQLite exactly as on PostgreSQL (where the store itself would have refused 1e30 or 3e9)."""
    before = row_counts(store)
    assert main(["subscription", "change", str(loaded), *argv]) == code
    assert one_error(capsys) == expected.format(id=loaded)
    assert row_counts(store) == before


def test_issue12_a_subscription_that_does_not_exist_is_a_bad_argument(store, loaded, capsys):
    """issue 12: an id that names nothing exits 2; one beyond any id is refused before a query."""
    assert main(["subscription", "change", "999", "--quantity", "3"]) == 2
    assert one_error(capsys) == "error: subscription #999 does not exist"
    assert main(["subscription", "show", "99999999999999999999"]) == 2
    assert one_error(capsys) == ("error: argument id: 99999999999999999999 is above the maximum of 2,147,483,647 "
                                 "(see `w365 subscription show --help`)")


def test_issue12_debug_shows_the_traceback(store, loaded, capsys):
    """issue 12: --debug adds the traceback to the same one-line error, same exit status."""
    assert main(["--debug", "subscription", "change", str(loaded), "--quantity", "1000000", "--selling-price", "2000000"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: subscription #")


# --------------------------------------------------------------------------------------------
# w365 run

RUN = "generate_full_cycle_invoice_monthly"
RUN_CASES = [
    (["run", "no_such_job", "--as-of", "2026-01-10"],
     "error: argument DAG_ID: no catalogue job 'no_such_job'; `w365 jobs list` shows them (see `w365 run --help`)"),
    (["run", RUN, "--as-of", "2026-02-30"], "error: argument --as-of: '2026-02-30' is not a date (YYYY-MM-DD) (see `w365 run --help`)"),
    (["run", RUN, "--as-of", "9999-12-31"],
     "error: argument --as-of: 9999-12-31 is after 2099-12-31, the latest date w365 accepts (see `w365 run --help`)"),
    (["run", RUN, "--as-of", "2026-01-10T12:00"],
     "error: argument --as-of: '2026-01-10T12:00' has no time zone; add Z or an offset such as +02:00 (see `w365 run --help`)"),
    (["run", RUN, "--as-of", "2026-01-10", "--param", "advance_days=abc"], "error: argument --param: advance_days 'abc' is not a whole number"),
    (["run", RUN, "--as-of", "2026-01-10", "--param", "advance_days=100000"],
     "error: argument --param: advance_days 100000 is above the maximum of 366 days"),
    (["run", RUN, "--as-of", "2026-01-10", "--param", "dry_run=ture"], "error: argument --param: dry_run 'ture' is not true/false"),
    (["run", RUN, "--as-of", "2026-01-10", "--param", "colour=blue"],
     f"error: argument --param: job {RUN} has no param 'colour'; it takes advance_days, dry_run, contract"),
    (["run", RUN, "--as-of", "2026-01-10", "--param", "dry_run=true", "--param", "dry_run=false"],
     "error: argument --param: param dry_run is given twice"),
    (["run", RUN, "--as-of", "2026-01-10", "--param", "advance_days"],
     "error: argument --param: 'advance_days' is not KEY=VALUE (see `w365 run --help`)"),
    (["run", "sync_usage_data", "--as-of", "2026-01-10", "--param", "month=2026-13"],
     "error: argument --param: month '2026-13-01' is not a date (YYYY-MM-DD)"),
]


@pytest.mark.parametrize("argv, expected", RUN_CASES, ids=[" ".join(c[0][3:])[:40] or c[0][1] for c in RUN_CASES])
def test_issue12_j6_run_refuses_bad_arguments_before_running(store, loaded, capsys, argv, expected):
    """issue 12 (SPEC J6): `w365 run` with an unknown job, an impossible or unbounded --as-of, a
    bad or unknown --param: one `error:` line naming the argument, exit 2, nothing run."""
    before = row_counts(store)
    assert main(argv) == 2
    assert one_error(capsys) == expected
    assert row_counts(store) == before


# --------------------------------------------------------------------------------------------
# The portal

PORTAL_NOW = datetime(2025, 12, 10, 17, 0, tzinfo=timezone.utc)


def _portal(session):
    f.set_timezone(session, "America/Los_Angeles")
    mine = f.customer(session, "Fabrikam")
    sub = f.subscription(session, f.contract(session, mine, start=date(2025, 12, 1)), name="Mine")
    token = issue_token(session, mine.id)
    session.commit()
    return TestClient(create_app(clock=lambda: PORTAL_NOW)), {"Authorization": f"Bearer {token}"}, sub.id


PORTAL_CASES = [
    ({"quantity": 3_000_000_000, "effective_date": "2025-12-20"}, "quantity", "quantity 3000000000 is above the maximum of 1,000,000 licences"),
    ({"quantity": 1e20, "effective_date": "2025-12-20"}, "quantity", "quantity 1E+20 is above the maximum of 1,000,000 licences"),
    ({"quantity": -1, "effective_date": "2025-12-20"}, "quantity", "quantity -1 is negative"),
    ({"quantity": 12, "effective_date": "9999-12-31"}, "effective_date", "effective_date 9999-12-31 is after 2099-12-31, the latest date w365 accepts"),
    ({"quantity": 12, "selling_price": "1e30", "effective_date": "2025-12-20"}, "selling_price", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize("body, field, message", PORTAL_CASES, ids=[c[1] + "-" + str(c[0].get(c[1]))[:12] for c in PORTAL_CASES])
def test_issue12_c13_portal_answers_422_with_the_reason_never_500(store, session, body, field, message):
    """issue 12 (SPEC C13): quantity 3,000,000,000 (a 500 on PostgreSQL before), 1e20, a date in
    9999 or a price (customers do not set prices): 422 naming the field and the reason, on both
    backends, and nothing written."""
    client, auth, sub_id = _portal(session)
    session.close()
    before = row_counts(store)
    r = client.post(f"/subscriptions/{sub_id}/scheduled-changes", headers=auth, json=body)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", field] and message in problem["msg"]
    assert row_counts(store) == before


def test_issue12_c13_portal_subscription_id_beyond_any_id_is_not_found(store, session):
    """issue 12 (SPEC C13): an id no integer column holds is 404, not a 500 from the driver."""
    client, auth, _ = _portal(session)
    r = client.post("/subscriptions/99999999999999999999/scheduled-changes", headers=auth, json={"quantity": 1, "effective_date": "2025-12-20"})
    assert r.status_code == 404


# --------------------------------------------------------------------------------------------
# Provider sync

SYNC_AS_OF = date(2026, 1, 20)
SYNC_NOW = datetime(2026, 1, 20, 10, 0, tzinfo=timezone.utc)


def test_issue12_p1_provider_records_out_of_bounds_are_quarantined_the_rest_applied(store, pc, monkeypatch):
    """issue 12 (SPEC P1, S3): a provider record with quantity 1e20 or 3,000,000,000, or an id
    longer than the column, is quarantined with the reason (the same on SQLite, which would
    store it, as on PostgreSQL, which would fail the batch); the rest of the batch is applied."""
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_CENTER", pc.connection_json())
    with store.session() as s:
        prov = f.provider(s, ProviderKind.PARTNER_CENTER, name="Partner Center")
        basic = f.product(s, sku="CFQ7TTC0LH18")
        cust = f.customer(s, "Fabrikam", provider_tenant_id="tenant-A")
        c = f.contract(s, cust, start=date(2025, 12, 1), number="BC-A")
        for psid in ("sub-1", "sub-2", "sub-3"):
            f.subscription(s, c, prov=prov, prod=basic, quantity=10, name=psid, provider_subscription_id=psid, start=date(2025, 12, 1))
        s.commit()
    pc.customers = [{"id": "tenant-A"}]
    pc.subscriptions["tenant-A"] = [
        pc_subscription("sub-1", "CFQ7TTC0LH18", quantity=12),  # good: applied
        pc_subscription("sub-2", "CFQ7TTC0LH18", quantity=10**20),
        pc_subscription("sub-3", "CFQ7TTC0LH18", quantity=3_000_000_000),
        pc_subscription("sub-4", "CFQ7TTC0LH18", quantity="1e20"),
        pc_subscription("x" * 80, "CFQ7TTC0LH18", quantity=1),
    ]
    report = sync_subscriptions(SYNC_AS_OF, now=SYNC_NOW)
    (res,) = report["providers"]
    assert res["quarantined"] == {
        "sub-2": "'quantity' 100000000000000000000 is above the maximum of 1,000,000 licences",
        "sub-3": "'quantity' 3000000000 is above the maximum of 1,000,000 licences",
        "sub-4": "'quantity' 1E+20 is above the maximum of 1,000,000 licences",
        "tenant-A#5": "'id' is 80 characters long; at most 64 are allowed",
    }
    assert [c["provider_subscription_id"] for c in res["changed"]] == ["sub-1"]
    with store.session() as s:
        quantities = dict(s.execute(select(Subscription.provider_subscription_id, Subscription.quantity)).all())
        assert quantities == {"sub-1": 12, "sub-2": 10, "sub-3": 10}
        reasons = dict(s.execute(select(JobException.entity_key, JobException.reason)).all())
        assert reasons == res["quarantined"]


# --------------------------------------------------------------------------------------------
# A database connection lost in the middle of a run

LOST_RUN = ["run", RUN, "--as-of", "2026-01-10"]
LOST = (f"error: lost the database connection during `w365 run {RUN} --as-of 2026-01-10`: the job commits per batch: "
        "batches finished before are stored, the one in progress was rolled back (nothing is half-written); rerun the same "
        "command to complete the work (a rerun is idempotent: nothing is billed or changed twice)")


def test_issue12_j6_lost_connection_is_one_line_saying_what_was_committed(store, loaded, capsys, monkeypatch):
    """issue 12 (SPEC J6): the job's connection dropped (and stayed down through its retries):
    one line says so, what the batches committed, and that a rerun completes it; exit 1."""

    def lost(*_a, **_k):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"), connection_invalidated=True)

    monkeypatch.setitem(jobs.ENTRY_POINTS, JobKind.FULL_CYCLE_INVOICE, lost)
    assert main(LOST_RUN) == 1
    assert one_error(capsys) == LOST
    # Another verb: one transaction, so nothing was written.
    monkeypatch.setattr("w365.billing.changes.change_subscription", lost)
    assert main(["subscription", "change", str(loaded), "--quantity", "30"]) == 1
    assert one_error(capsys) == (f"error: lost the database connection during `w365 subscription change {loaded} --quantity 30`: "
                                 "its transaction was rolled back, nothing was written; rerun it when the database answers")


def test_issue12_j6_unexpected_error_is_one_line_too(store, loaded, capsys, monkeypatch):
    """issue 12: an exception nobody foresaw is one line saying so and what it was; exit 1."""

    def boom(*_a, **_k):
        raise KeyError("surprise")

    monkeypatch.setitem(jobs.ENTRY_POINTS, JobKind.FULL_CYCLE_INVOICE, boom)
    assert main(LOST_RUN) == 1
    assert one_error(capsys) == ("error: unexpected error (KeyError: 'surprise'); nothing of the transaction in progress was "
                                 "written; rerun with --debug for the traceback and report it")


@pytest.mark.parametrize("store", ["postgres"], indirect=True)  # pg_terminate_backend is PostgreSQL's
def test_issue12_j6_connection_terminated_by_the_server_mid_run_then_a_rerun_completes(store, capsys, monkeypatch):
    """issue 12 (SPEC J6), PostgreSQL: after the first batch of invoices commits, the server
    terminates the job's connection at every later write (pg_terminate_backend from a second
    connection). The retries give up; the CLI prints the one line; the first batch's invoices are
    stored, nothing else; a rerun of the same date completes the run and a third adds nothing."""
    assert main(["demo", "load", "--customers", "3", "--as-of", "2026-01-10"]) == 0  # two monthly contracts due
    capsys.readouterr()
    monkeypatch.setitem(dispatcher.generate_full_cycle_invoices.__kwdefaults__, "batch", 1)
    killer = create_engine(store.url, poolclass=NullPool)
    writes = []

    def terminate_after_the_first_batch() -> None:
        writes.append(1)
        if len(writes) > 1:
            with killer.connect() as c:
                c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    with hooks.installed("invoice.before_write", terminate_after_the_first_batch):
        assert main(LOST_RUN) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert [line for line in out.err.splitlines() if line.startswith("error:")] == [LOST]
    killer.dispose()
    with store.session() as s:
        first = s.scalars(select(Invoice.contract_id)).all()
    assert len(set(first)) == 1  # the first batch (one contract) committed, whole

    assert main(LOST_RUN + ["--json"]) == 0
    capsys.readouterr()
    with store.session() as s:
        after = s.scalar(select(func.count()).select_from(Invoice))
        due = s.scalar(select(func.count(func.distinct(Invoice.contract_id))))
    assert after > len(first) and due > 1
    assert main(LOST_RUN) == 0
    capsys.readouterr()
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == after
        assert s.scalar(select(func.count()).select_from(LicenseChangeLog)) > 0
