"""invoice document: seller and bill-to addresses, tenant locale

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Issue 16 (SPEC I11, I13): the invoice document's seller block comes from the tenant
(``legal_name``, ``address_line1``/``2``, ``city``, ``postal_code``, ``region``, ``country``,
``tax_id``), its bill-to block from the customer (``billing_address_line1``/``2``,
``billing_city``, ``billing_postal_code``, ``billing_region``, ``billing_country``), and its
amounts and dates are written in the tenant's ``locale`` (default ``en_US``).

Only columns are added (``ALTER TABLE ... ADD COLUMN``), all nullable but ``tenant.locale``, which
has a server default, so no row is read or rewritten and no invoice changes: an invoice is
rendered from the store as it is, and an existing store renders as before with empty address
blocks until they are set. ``tenant`` and ``customer`` carry no guard triggers (0001/0002 guard
the invoice tables and the LCL), and nothing is rebuilt. The downgrade drops the columns in
place (SQLite from 3.35; older SQLite falls back to the batch rebuild, as in 0003).
"""
import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TENANT = (
    ("legal_name", 200), ("address_line1", 200), ("address_line2", 200), ("city", 100), ("postal_code", 20),
    ("region", 100), ("country", 2), ("tax_id", 50),
)
CUSTOMER = (
    ("billing_address_line1", 200), ("billing_address_line2", 200), ("billing_city", 100), ("billing_postal_code", 20),
    ("billing_region", 100), ("billing_country", 2),
)


def upgrade() -> None:
    for name, length in TENANT:
        op.add_column("tenant", sa.Column(name, sa.String(length), nullable=True))
    op.add_column("tenant", sa.Column("locale", sa.String(16), server_default="en_US", nullable=False))
    for name, length in CUSTOMER:
        op.add_column("customer", sa.Column(name, sa.String(length), nullable=True))


def _drop(table: str, names: list[str]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.dialect.dbapi is not None and bind.dialect.dbapi.sqlite_version_info < (3, 35, 0):
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.drop_column(name)
        return
    for name in names:
        op.drop_column(table, name)


def downgrade() -> None:
    _drop("customer", [name for name, _ in reversed(CUSTOMER)])
    _drop("tenant", ["locale"] + [name for name, _ in reversed(TENANT)])
