"""tax codes, taxed lines and credit notes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Issue 16 (SPEC I1-I9):

* ``tax_code`` (code, name) and ``tax_rate`` (code, rate in percent, effective from): new tables;
* ``customer.tax_code`` and ``tax_exempt_reference``, ``product.tax_code`` (the per-product
  override): new nullable columns;
* ``invoice_line.tax_code``, ``tax_rate``, ``tax_amount`` and ``invoice.tax_total``,
  ``document`` ('invoice' or 'credit_note'), ``corrects_invoice_id``, ``tax_exempt_reference``;
* ``tenant.credit_note_prefix`` ('CN-') and ``next_credit_note_number`` (1): the credit notes'
  own gapless series; ``tenant.credit_notes_from``, set to the next invoice number: the invoices
  before it were issued when a correction with a negative total was still an invoice, and
  remain so (the audit accepts them as such). A credit note's ``invoice.sequence`` is minus its number in that series,
  so the 0001 unique key on ``sequence`` holds both series without rebuilding the table.

Existing invoices must not change, and do not: every new column is added (ADD COLUMN) with a
constant default, which is what an invoice issued before carries, tax 0, no code, an invoice:
its subtotal (total - tax_total) is its total, as before. No invoice or line is read or written
(an UPDATE would meet 0002's guards anyway; only the tenant row is), no table is rebuilt.

Numbered 0006, after 0005 (the invoice document's addresses and locale, issue 16), which adds
only tenant and customer columns: the invoice tables are as 0002 left them (0003-0005 add no
invoice or invoice_line column), so 0002's column lists below are still the whole tables.

0002's guards: PostgreSQL compares whole rows, so the new columns of an issued invoice and its
lines are frozen without a new trigger. SQLite's triggers name their columns: the two UPDATE
guards are re-created here with the new columns (``guard_invoice_update``: everything but the
bookkeeping columns; ``guard_invoice_line_update``: every column). The downgrade restores them
exactly as 0002 made them, then drops the columns and tables; it refuses (changing nothing)
while a credit note or a taxed line exists: that is history older code would misread.
"""
import sqlalchemy as sa
from alembic import op

import w365.store.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# 0002's lists, copied (a migration never imports another), and what this revision adds.
INVOICE_BOOKKEEPING = ("payment_status", "amount_paid", "paid_on")
INVOICE_COLUMNS_0002 = (
    "id", "number", "sequence", "contract_id", "customer_id", "kind", "currency", "issue_date", "due_date",
    "period_from", "period_to", "total", "payment_status", "amount_paid", "paid_on", "created_by_job", "created_at",
)
LINE_COLUMNS_0002 = (
    "id", "invoice_id", "line_no", "subscription_id", "kind", "description", "billing_period_from", "billing_period_to",
    "period_from", "period_to", "quantity", "unit_price", "days", "period_days", "proration_factor", "amount",
    "sales_unit", "source_currency", "fx_rate",
)
INVOICE_NEW = ("tax_total", "document", "corrects_invoice_id", "tax_exempt_reference")
LINE_NEW = ("tax_code", "tax_rate", "tax_amount")
ALLOWED = ", ".join(INVOICE_BOOKKEEPING)


def _money() -> w365.store.types.ExactDecimal:
    return w365.store.types.ExactDecimal(precision=18, scale=4)


def _percent() -> w365.store.types.ExactDecimal:
    return w365.store.types.ExactDecimal(precision=7, scale=4)


def upgrade() -> None:
    op.create_table(
        'tax_code',
        sa.Column('code', sa.String(length=24), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint('code', name=op.f('pk_tax_code')),
    )
    op.create_table(
        'tax_rate',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('code', sa.String(length=24), nullable=False),
        sa.Column('rate', _percent(), nullable=False),
        sa.Column('effective_from', sa.Date(), nullable=False),
        sa.CheckConstraint('CAST(rate AS NUMERIC) >= 0 AND CAST(rate AS NUMERIC) <= 100', name=op.f('ck_tax_rate_rate_percent')),
        sa.ForeignKeyConstraint(['code'], ['tax_code.code'], name=op.f('fk_tax_rate_code_tax_code')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tax_rate')),
        sa.UniqueConstraint('code', 'effective_from', name=op.f('uq_tax_rate_code_effective_from')),
    )
    sqlite = op.get_context().dialect.name == "sqlite"

    def add_reference(table: str, column: str, type_: str, target: str) -> None:
        """A nullable column referencing ``target`` (table.column): SQLite's ADD COLUMN takes
        the REFERENCES inline (Alembic would ask for a table rebuild); PostgreSQL a named key."""
        other, other_column = target.split(".")
        name = f"fk_{table}_{column}_{other}"
        if sqlite:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {type_} REFERENCES {other} ({other_column})")
        else:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {type_} CONSTRAINT {name} REFERENCES {other} ({other_column})")

    add_reference('customer', 'tax_code', 'VARCHAR(24)', 'tax_code.code')
    op.add_column('customer', sa.Column('tax_exempt_reference', sa.String(length=100), nullable=True))
    add_reference('product', 'tax_code', 'VARCHAR(24)', 'tax_code.code')
    op.add_column('tenant', sa.Column('credit_note_prefix', sa.String(length=20), server_default='CN-', nullable=False))
    op.add_column('tenant', sa.Column('next_credit_note_number', sa.Integer(), server_default='1', nullable=False))
    op.add_column('tenant', sa.Column('credit_notes_from', sa.Integer(), server_default='1', nullable=False))
    op.execute("UPDATE tenant SET credit_notes_from = next_invoice_number")
    op.add_column('invoice', sa.Column('tax_total', _money(), server_default='0', nullable=False))
    # The models' VARCHAR + CHECK enum, written out: Alembic adds no CHECK with a column.
    op.execute("ALTER TABLE invoice ADD COLUMN document VARCHAR(24) DEFAULT 'invoice' NOT NULL "
               "CONSTRAINT ck_invoice_document_type CHECK (document IN ('invoice', 'credit_note'))")
    add_reference('invoice', 'corrects_invoice_id', 'INTEGER', 'invoice.id')
    op.add_column('invoice', sa.Column('tax_exempt_reference', sa.String(length=100), nullable=True))
    op.add_column('invoice_line', sa.Column('tax_code', sa.String(length=24), nullable=True))
    op.add_column('invoice_line', sa.Column('tax_rate', _percent(), server_default='0', nullable=False))
    op.add_column('invoice_line', sa.Column('tax_amount', _money(), server_default='0', nullable=False))
    if sqlite:
        _sqlite_guards(INVOICE_COLUMNS_0002 + INVOICE_NEW, LINE_COLUMNS_0002 + LINE_NEW)


def downgrade() -> None:
    bind = op.get_bind()
    taxed = bind.execute(sa.text(
        "SELECT (SELECT count(*) FROM invoice WHERE document <> 'invoice')"
        " + (SELECT count(*) FROM invoice_line WHERE tax_code IS NOT NULL OR CAST(tax_amount AS NUMERIC) <> 0)")).scalar()
    if taxed:
        raise RuntimeError(f"cannot downgrade below 0006: {taxed} credit note(s) or taxed invoice line(s) exist, which "
                           "revision 0005 cannot hold; nothing was changed")
    if op.get_context().dialect.name == "sqlite":
        _sqlite_guards(INVOICE_COLUMNS_0002, LINE_COLUMNS_0002)
    for table, columns in (("invoice_line", LINE_NEW), ("invoice", INVOICE_NEW),
                           ("tenant", ("credit_note_prefix", "next_credit_note_number", "credit_notes_from")),
                           ("product", ("tax_code",)), ("customer", ("tax_code", "tax_exempt_reference"))):
        for column in reversed(columns):
            op.drop_column(table, column)
    op.drop_table('tax_rate')
    op.drop_table('tax_code')


def _changed(cols: tuple[str, ...]) -> str:
    return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in cols)


def _sqlite_guards(invoice_columns: tuple[str, ...], line_columns: tuple[str, ...]) -> None:
    """Re-create 0002's two UPDATE guards over these columns (same names and messages)."""
    frozen = tuple(c for c in invoice_columns if c not in INVOICE_BOOKKEEPING)
    op.execute("DROP TRIGGER guard_invoice_update")
    op.execute("DROP TRIGGER guard_invoice_line_update")
    op.execute(f"CREATE TRIGGER guard_invoice_update BEFORE UPDATE OF {', '.join(frozen)} ON invoice FOR EACH ROW"
               f" WHEN {_changed(frozen)}"
               f" BEGIN SELECT RAISE(ABORT, 'invoice is issued and immutable: only {ALLOWED} may change'); END")
    op.execute(f"CREATE TRIGGER guard_invoice_line_update BEFORE UPDATE ON invoice_line FOR EACH ROW"
               f" WHEN {_changed(line_columns)}"
               f" BEGIN SELECT RAISE(ABORT, 'invoice is issued and immutable: its lines cannot change'); END")
