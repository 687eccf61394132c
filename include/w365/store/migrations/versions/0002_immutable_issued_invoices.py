"""issued invoices are immutable

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Issue 11 (SPEC M3, S3): once issued, an invoice is a legal document. The database itself refuses:

* ``invoice``: DELETE, and UPDATE of any column but the bookkeeping ones, ``INVOICE_BOOKKEEPING``
  (payment status from the accounting system, SPEC P2);
* ``invoice_line``: DELETE, and UPDATE of any column (this replaces the 0001 guard, which left
  description, line_no, billing_period_*, proration_factor, sales_unit, source_currency and
  fx_rate editable);
* ``invoice_line_lcl``, ``invoice_line_slcl`` (what a line bills): UPDATE and DELETE;
* PostgreSQL: TRUNCATE of those four tables and of ``license_change_log``, directly or through
  ``TRUNCATE ... CASCADE`` of a table they reference (customer, billing_contract...), which row
  triggers do not see. SQLite has no TRUNCATE; its ``DELETE FROM t`` fires the row triggers.

``license_change_log`` keeps its 0001 guard (append-only but for provisioning bookkeeping).
An UPDATE of an invoice or line that leaves every frozen value as it was is not a change and
passes. New rows may be inserted (the engine writes an invoice, its lines and links in one
transaction), but on SQLite an INSERT that meets an existing invoice or line on a unique key is
refused, since INSERT OR REPLACE would otherwise delete and rewrite it without firing a DELETE
trigger (PostgreSQL's INSERT ... ON CONFLICT DO UPDATE fires the UPDATE guard).

Every refusal is one line saying what and why; PostgreSQL names the invoice (and the columns
tried), SQLite's ``RAISE`` takes only a literal, so there the message names the rule alone.
Administrators and tests wipe a store through ``w365.store.admin.guards_bypassed`` (PostgreSQL
``SET LOCAL session_replication_role = replica``; SQLite drops and re-creates the ``guard_*``
triggers inside the transaction). Note for later migrations: on SQLite a batch
(copy-and-move) ALTER of a guarded table drops its triggers; re-create them afterwards.

The upgrade only creates triggers and functions: no existing row is read or changed.
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


# The columns of an issued invoice that may still change: payment status from the accounting
# system (w365.integrations.payments, SPEC P2). Everything else about an issued invoice is frozen.
INVOICE_BOOKKEEPING = ("payment_status", "amount_paid", "paid_on")
# invoice and invoice_line as of this revision (SQLite triggers must name columns; PostgreSQL
# compares whole rows, so a column added later is frozen there without a new trigger).
INVOICE_COLUMNS = (
    "id", "number", "sequence", "contract_id", "customer_id", "kind", "currency", "issue_date", "due_date",
    "period_from", "period_to", "total", "payment_status", "amount_paid", "paid_on", "created_by_job", "created_at",
)
INVOICE_FROZEN = tuple(c for c in INVOICE_COLUMNS if c not in INVOICE_BOOKKEEPING)
LINE_COLUMNS = (
    "id", "invoice_id", "line_no", "subscription_id", "kind", "description", "billing_period_from", "billing_period_to",
    "period_from", "period_to", "quantity", "unit_price", "days", "period_days", "proration_factor", "amount",
    "sales_unit", "source_currency", "fx_rate",
)
LINK_TABLES = {"invoice_line_lcl": "lcl_id", "invoice_line_slcl": "slcl_id"}
# Tables whose TRUNCATE is refused on PostgreSQL, and why.
TRUNCATE_GUARDED = {
    "invoice": "issued invoices are immutable",
    "invoice_line": "issued invoices are immutable",
    "invoice_line_lcl": "issued invoices are immutable",
    "invoice_line_slcl": "issued invoices are immutable",
    "license_change_log": "license_change_log is append-only (SPEC S3)",
}
BYPASS_HINT = "administrators: w365.store.admin.guards_bypassed"
ALLOWED = ", ".join(INVOICE_BOOKKEEPING)


def _is_postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if _is_postgres():
        _upgrade_postgres()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    if _is_postgres():
        _downgrade_postgres()
    else:
        _downgrade_sqlite()


# --- PostgreSQL ---------------------------------------------------------------------------------

def _upgrade_postgres() -> None:
    keep = "ARRAY[" + ", ".join(f"'{c}'" for c in INVOICE_BOOKKEEPING) + "]"
    op.execute(f"""
CREATE FUNCTION w365_guard_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'invoice % is issued and immutable: it cannot be deleted', OLD.number;
  END IF;
  IF (to_jsonb(NEW) - {keep}) IS DISTINCT FROM (to_jsonb(OLD) - {keep}) THEN
    SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
      FROM jsonb_each(to_jsonb(NEW) - {keep}) AS n
     WHERE n.value IS DISTINCT FROM to_jsonb(OLD) -> n.key;
    RAISE EXCEPTION 'invoice % is issued and immutable: only {ALLOWED} may change, not %', OLD.number, changed;
  END IF;
  RETURN NEW;
END $$""")
    op.execute("CREATE TRIGGER guard_invoice BEFORE UPDATE OR DELETE ON invoice "
               "FOR EACH ROW EXECUTE FUNCTION w365_guard_invoice()")

    # invoice_line: the 0001 guard froze only some columns; this one freezes the whole row.
    op.execute("DROP TRIGGER guard_invoice_line ON invoice_line")
    op.execute("DROP FUNCTION w365_guard_invoice_line()")
    op.execute("""
CREATE FUNCTION w365_guard_invoice_line() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  inv text;
  changed text;
BEGIN
  IF TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD THEN
    RETURN NEW;
  END IF;
  SELECT number INTO inv FROM invoice WHERE id = OLD.invoice_id;
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'invoice % is issued and immutable: its line % cannot be deleted', inv, OLD.line_no;
  END IF;
  SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
    FROM jsonb_each(to_jsonb(NEW)) AS n
   WHERE n.value IS DISTINCT FROM to_jsonb(OLD) -> n.key;
  RAISE EXCEPTION 'invoice % is issued and immutable: its line % cannot change (%)', inv, OLD.line_no, changed;
END $$""")
    op.execute("CREATE TRIGGER guard_invoice_line BEFORE UPDATE OR DELETE ON invoice_line "
               "FOR EACH ROW EXECUTE FUNCTION w365_guard_invoice_line()")

    # The links say what a line bills (SPEC M3): TG_ARGV[0] names the other end.
    op.execute("""
CREATE FUNCTION w365_guard_invoice_link() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  inv text;
  line_number integer;
BEGIN
  SELECT i.number, l.line_no INTO inv, line_number
    FROM invoice_line AS l JOIN invoice AS i ON i.id = l.invoice_id
   WHERE l.id = OLD.invoice_line_id;
  RAISE EXCEPTION 'invoice % is issued and immutable: the % link of its line % (% %) cannot be %',
    inv, TG_TABLE_NAME, line_number, TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[0],
    CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'updated' END;
END $$""")
    for table, other in LINK_TABLES.items():
        op.execute(f"CREATE TRIGGER guard_{table} BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION w365_guard_invoice_link('{other}')")

    # TRUNCATE passes row triggers, and TRUNCATE ... CASCADE reaches these tables from any table
    # they reference; a statement trigger on each truncated table sees both.
    op.execute(f"""
CREATE FUNCTION w365_guard_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'TRUNCATE of % (directly or by CASCADE) refused: % ({BYPASS_HINT})', TG_TABLE_NAME, TG_ARGV[0];
END $$""")
    for table, why in TRUNCATE_GUARDED.items():
        op.execute(f"CREATE TRIGGER guard_truncate_{table} BEFORE TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION w365_guard_truncate('{why}')")


def _downgrade_postgres() -> None:
    for table in TRUNCATE_GUARDED:
        op.execute(f"DROP TRIGGER guard_truncate_{table} ON {table}")
    op.execute("DROP FUNCTION w365_guard_truncate()")
    for table in LINK_TABLES:
        op.execute(f"DROP TRIGGER guard_{table} ON {table}")
    op.execute("DROP FUNCTION w365_guard_invoice_link()")
    op.execute("DROP TRIGGER guard_invoice ON invoice")
    op.execute("DROP FUNCTION w365_guard_invoice()")
    op.execute("DROP TRIGGER guard_invoice_line ON invoice_line")
    op.execute("DROP FUNCTION w365_guard_invoice_line()")
    # Back to the 0001 guard, exactly as 0001 created it.
    old = ", ".join(f"OLD.{c}" for c in LINE_FROZEN_0001)
    new = ", ".join(f"NEW.{c}" for c in LINE_FROZEN_0001)
    what = "invoice lines are immutable once issued"
    op.execute(f"""
CREATE FUNCTION w365_guard_invoice_line() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION '{what}: rows cannot be deleted (id %)', OLD.id;
  END IF;
  IF ROW({old}) IS DISTINCT FROM ROW({new}) THEN
    RAISE EXCEPTION '{what}: row % cannot be changed', OLD.id;
  END IF;
  RETURN NEW;
END $$""")
    op.execute("CREATE TRIGGER guard_invoice_line BEFORE UPDATE OR DELETE ON invoice_line "
               "FOR EACH ROW EXECUTE FUNCTION w365_guard_invoice_line()")


# --- SQLite -------------------------------------------------------------------------------------

def _changed(cols: tuple[str, ...]) -> str:
    return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in cols)


# The unique keys of invoice and invoice_line (0001): (kind of a partial index or None, columns).
INVOICE_KEYS = (
    (None, ("id",)), (None, ("number",)), (None, ("sequence",)),
    ("full_cycle", ("contract_id", "period_from")), ("usage", ("contract_id", "period_from")),
    ("change_log", ("contract_id", "issue_date")),
)
LINE_KEYS = (
    (None, ("id",)), (None, ("invoice_id", "line_no")),
    ("recurring", ("subscription_id", "period_from", "unit_price")), ("one_time", ("subscription_id",)),
)


def _exists_any(table: str, keys: tuple[tuple[str | None, tuple[str, ...]], ...]) -> str:
    terms = []
    for kind, cols in keys:
        match = " AND ".join(f"{c} = NEW.{c}" for c in cols)
        if kind is None:
            terms.append(f"EXISTS (SELECT 1 FROM {table} WHERE {match})")
        else:
            terms.append(f"(NEW.kind = '{kind}' AND EXISTS (SELECT 1 FROM {table} WHERE kind = '{kind}' AND {match}))")
    return " OR ".join(terms)


def _sqlite_trigger(name: str, when: str, table: str, message: str, condition: str | None = None) -> None:
    assert "'" not in message
    op.execute(f"CREATE TRIGGER {name} BEFORE {when} ON {table} FOR EACH ROW"
               + (f" WHEN {condition}" if condition else "")
               + f" BEGIN SELECT RAISE(ABORT, '{message}'); END")


def _upgrade_sqlite() -> None:
    _sqlite_trigger("guard_invoice_update", f"UPDATE OF {', '.join(INVOICE_FROZEN)}", "invoice",
                    f"invoice is issued and immutable: only {ALLOWED} may change", _changed(INVOICE_FROZEN))
    _sqlite_trigger("guard_invoice_delete", "DELETE", "invoice", "invoice is issued and immutable: it cannot be deleted")
    op.execute("DROP TRIGGER guard_invoice_line_update")
    op.execute("DROP TRIGGER guard_invoice_line_delete")
    _sqlite_trigger("guard_invoice_line_update", "UPDATE", "invoice_line",
                    "invoice is issued and immutable: its lines cannot change", _changed(LINE_COLUMNS))
    _sqlite_trigger("guard_invoice_line_delete", "DELETE", "invoice_line",
                    "invoice is issued and immutable: its lines cannot be deleted")
    for table in LINK_TABLES:
        for when, verb in (("UPDATE", "updated"), ("DELETE", "deleted")):
            _sqlite_trigger(f"guard_{table}_{when.lower()}", when, table,
                            f"invoice is issued and immutable: its {table} links cannot be {verb}")
    # INSERT OR REPLACE (REPLACE INTO) deletes the row it conflicts with without firing DELETE
    # triggers (unless PRAGMA recursive_triggers), and would rewrite an issued invoice or line:
    # refuse an INSERT that meets an existing row on any unique key. (A link's key is the whole
    # row, so replacing one changes nothing.) One EXISTS per key, so each is an index lookup.
    _sqlite_trigger("guard_invoice_replace", "INSERT", "invoice",
                    "invoice is issued and immutable: no INSERT may replace it (a row with the same key exists)",
                    _exists_any("invoice", INVOICE_KEYS))
    _sqlite_trigger("guard_invoice_line_replace", "INSERT", "invoice_line",
                    "invoice is issued and immutable: no INSERT may replace its lines (a row with the same key exists)",
                    _exists_any("invoice_line", LINE_KEYS))


def _downgrade_sqlite() -> None:
    op.execute("DROP TRIGGER guard_invoice_replace")
    op.execute("DROP TRIGGER guard_invoice_line_replace")
    for table in LINK_TABLES:
        op.execute(f"DROP TRIGGER guard_{table}_update")
        op.execute(f"DROP TRIGGER guard_{table}_delete")
    op.execute("DROP TRIGGER guard_invoice_update")
    op.execute("DROP TRIGGER guard_invoice_delete")
    op.execute("DROP TRIGGER guard_invoice_line_update")
    op.execute("DROP TRIGGER guard_invoice_line_delete")
    # Back to the 0001 guard, exactly as 0001 created it.
    what = "invoice lines are immutable once issued"
    op.execute(f"CREATE TRIGGER guard_invoice_line_delete BEFORE DELETE ON invoice_line "
               f"BEGIN SELECT RAISE(ABORT, '{what}: rows cannot be deleted'); END")
    op.execute(f"CREATE TRIGGER guard_invoice_line_update BEFORE UPDATE OF {', '.join(LINE_FROZEN_0001)} ON invoice_line "
               f"BEGIN SELECT RAISE(ABORT, '{what}: rows cannot be changed'); END")


# The invoice_line columns 0001 froze (a copy: a migration never imports another).
LINE_FROZEN_0001 = (
    "invoice_id", "subscription_id", "kind", "period_from", "period_to", "quantity", "unit_price",
    "days", "period_days", "amount",
)
