"""An independent auditor of the books: ``w365 verify billing`` (issue 11).

It shares no code with the billing engine on purpose: a checker that reused the engine's
loader, pricer and calendar would agree with the engine's mistakes. Everything is re-derived
from the rows with its own, deliberately simple, arithmetic: exact ``Fraction``/integer maths,
its own half-up rounding, its own calendar and its own ISO 4217 minor units (only the models,
the session, the standard library and dateutil are imported).

What it proves (docs/billing.md; SPEC numbers):

* Per subscription and day of every billed period (S3, S6, C4, C12, B2, B5, S1): the quantity
  billed per unit price equals what the change logs say, the pending scheduled changes laid
  over them. Runs of days between change points are checked as one step: nothing that decides
  a day's values changes inside a run, so that is exactly checking each day.
* Per subscription and billed period (M2): the lines add up to the period's ideal lines, i.e.
  what its first invoice would have said had every change been known then.
* Per line (M2, M3): amount = quantity x unit price x days / period days, rounded half-up once
  to the invoice currency's minor unit; days, period days and the stored proration factor (to
  10 places) agree with the dates; the billing period is a billed period of the contract
  calendar; licence lines link their changes, and only changes of their own subscription.
* Per invoice (M2, J6): total = sum of its lines; currency and customer are the contract's;
  number = prefix + zero-padded sequence; sequences gapless 1..N over the tenant.
* Per change: the stored bill-from day is the one S6 gives.

A per-day difference that a coming run is due to settle (an unbilled change, a billed-ahead
scheduled change since cancelled, a day out of the contract's service) names that run;
everything else is an error.
"""

from w365.operations.audit.arithmetic import ISO_4217_MINOR_UNITS
from w365.operations.audit.checks import audit_billing
from w365.operations.audit.report import AuditReport, Difference

__all__ = ["ISO_4217_MINOR_UNITS", "AuditReport", "Difference", "audit_billing"]
