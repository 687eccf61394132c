"""scheduled suspensions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Issue 13, item 8: a suspension may be scheduled for a future date like any other change (SPEC
C1, C6, S2): ``scheduled_license_change_log.action`` takes a fourth value, ``suspend``, next to
``change``, ``activate`` and ``deactivate``. The action is a VARCHAR with a CHECK constraint
(``ck_scheduled_license_change_log_slcl_action``, the models' ``native_enum=False`` enums), so
the upgrade only widens that CHECK: no row is read or changed, no column or index is touched.

* PostgreSQL: the constraint is dropped and added again with the new list (in the migration's
  transaction; existing rows satisfy the wider list).
* SQLite cannot alter a CHECK in place, and a batch (copy-and-move) rebuild of the table is what
  0002's docstring warns about. ``scheduled_license_change_log`` itself carries no guard
  triggers, but ``license_change_log.slcl_id`` and ``invoice_line_slcl.slcl_id`` reference it:
  the rebuild's ``DROP TABLE`` would, with ``PRAGMA foreign_keys=ON`` (which the store's
  connections set and which cannot be turned off inside the migration's transaction), delete
  every row through the foreign keys' eyes and fail, and it would rebuild the partial unique
  index of SPEC C8 by reflection. So the table is not rebuilt: the constraint's text is widened
  in ``sqlite_schema`` with SQLite's documented procedure for loosening a CHECK constraint
  ("Making Other Kinds Of Table Schema Changes", https://sqlite.org/lang_altertable.html):
  ``PRAGMA writable_schema``, one UPDATE of the table's CREATE text, ``schema_version`` + 1,
  all inside the migration's transaction, then ``PRAGMA integrity_check`` of the table. The
  CREATE text must hold the 0001 constraint exactly once; anything else stops the migration
  with a clear error and changes nothing.

The downgrade narrows the CHECK back; it refuses (and changes nothing) while any scheduled change
has the action ``suspend`` (cancelled and archived ones included: their rows would break the
narrower constraint): those are history the older code cannot read.
"""
import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TABLE = "scheduled_license_change_log"
CONSTRAINT = "ck_scheduled_license_change_log_slcl_action"
OLD = ("change", "activate", "deactivate")
NEW = OLD + ("suspend",)


def _check(values: tuple[str, ...]) -> str:
    return "action IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    _set(OLD, NEW)


def downgrade() -> None:
    bind = op.get_bind()
    count = bind.execute(sa.text(f"SELECT count(*) FROM {TABLE} WHERE action = 'suspend'")).scalar()
    if count:
        raise RuntimeError(
            f"cannot downgrade below 0004: {count} scheduled change(s) are scheduled suspensions (action 'suspend'), "
            "which revision 0003 cannot hold; nothing was changed"
        )
    _set(NEW, OLD)


def _set(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {CONSTRAINT}")
        op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {CONSTRAINT} CHECK ({_check(new)})")
        return
    # SQLite: widen (or narrow) the CHECK's text in place; see the docstring.
    sql = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": TABLE}).scalar()
    was = f"CONSTRAINT {CONSTRAINT} CHECK ({_check(old)})"
    if sql is None or sql.count(was) != 1:
        raise RuntimeError(f"{TABLE}: its CREATE TABLE text does not hold `{was}` exactly once; nothing was changed")
    version = bind.execute(sa.text("PRAGMA schema_version")).scalar_one()
    bind.execute(sa.text("PRAGMA writable_schema = ON"))
    try:
        bind.execute(sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :t"),
                     {"sql": sql.replace(was, f"CONSTRAINT {CONSTRAINT} CHECK ({_check(new)})"), "t": TABLE})
        bind.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    finally:
        bind.execute(sa.text("PRAGMA writable_schema = OFF"))
    # The table only (SQLite >= 3.33): the CHECK is re-verified on its rows, the rest is untouched.
    problems = [r[0] for r in bind.execute(sa.text(f"PRAGMA integrity_check({TABLE})")).all()]
    if problems != ["ok"]:
        raise RuntimeError(f"{TABLE}: integrity check after widening the CHECK failed: {problems[:5]}")
