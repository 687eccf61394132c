"""Previewing invoices: what a run would bill for a contract, writing nothing (Stripe's upcoming
invoice; ``w365 invoice preview`` and the contract page)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.billing.invoicing.generator import BadContractData
from w365.billing.invoicing.loader import (
    load_bundles,
    load_rates,
    load_units,
    pricer_for,
    terms_for,
)
from w365.billing.invoicing.tax import tax_drafts
from w365.billing.invoicing.planner import (
    PlannedInvoice,
    as_billed,
    draft_dict,
    plan_change_log,
    plan_full_cycle,
)
from w365.core.money import UnknownCurrency
from w365.errors import NotFound, W365Error
from w365.store.models import (
    BillingContract,
    ChangeBilling,
    ContractStatus,
)


def preview_invoice(session: Session, contract_number: str, as_of: date) -> list[dict[str, Any]]:
    """The invoice(s) that would be produced, writing nothing (Stripe's upcoming invoice): the
    change-log differences owed now (if the contract bills changes immediately) and the next
    full-cycle invoice."""
    cid = session.scalar(select(BillingContract.id).where(BillingContract.number == contract_number))
    if cid is None:
        raise NotFound(f"no billing contract {contract_number!r}")
    b = load_bundles(session, [cid])[cid]
    c = b.contract
    units, rates = load_units(session), load_rates(session)
    out: list[tuple[Any, PlannedInvoice, dict[str, Any]]] = []
    try:
        terms = terms_for(c, units)
        pricer = pricer_for(terms, units, rates)
        billed = list(b.billed)
        if c.change_billing == ChangeBilling.IMMEDIATE.value or c.status != ContractStatus.ACTIVE.value:
            for inv in plan_change_log(terms, b.subs, billed, next_invoice_date=c.next_invoice_date, billed_from=c.billed_from, pricer=pricer).invoices:
                out.append((c, inv, draft_dict(contract_number, c.currency, inv)))
                billed += as_billed(inv.lines)
        if c.next_invoice_date is not None and c.status == ContractStatus.ACTIVE.value:
            plan = plan_full_cycle(
                terms, b.subs, billed, next_invoice_date=c.next_invoice_date, billed_from=c.billed_from,
                horizon=max(as_of, c.next_invoice_date), pricer=pricer, existing_full_cycle=frozenset(b.full_cycle_periods),
            )
            out += [(c, inv, draft_dict(contract_number, c.currency, inv)) for inv in plan.invoices]
    except (BadContractData, UnknownCurrency) as exc:
        raise W365Error(f"contract {contract_number} cannot be billed: {exc}") from None
    for reason in tax_drafts(session, out).values():  # SPEC I4: the preview shows the tax too
        raise W365Error(f"contract {contract_number} cannot be billed: {reason}")
    return [d for _, _, d in out]
