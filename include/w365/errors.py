"""Errors that reach operators. Each names the record and the rule, so it can be acted on."""

from __future__ import annotations


class W365Error(Exception):
    """Base: a refusal with a message meant for people (the CLI prints it without a traceback
    and exits 1: a rule said no)."""


class ValidationError(W365Error):
    """Input or a requested change breaks a rule. ``record`` names what, ``rule`` cites why."""

    def __init__(self, record: str, reason: str, rule: str | None = None):
        self.record = record
        self.reason = reason
        self.rule = rule
        super().__init__(f"{record}: {reason}" + (f" ({rule})" if rule else ""))


class NotFound(W365Error):
    """An id or number that names nothing in the store (the CLI exits 2: a bad argument)."""


class UsageError(W365Error):
    """A command line that cannot be run as written: a usage error or a bad argument value (the
    CLI exits 2). The message names the argument."""


class ExternalError(W365Error):
    """An outside system (a provider, the accounting system) failed a request after the HTTP
    client's retries, or refused it. The task does not retry it again (one retry layer)."""


class JobFailed(W365Error):
    """A job that did its work but could not reach a provider or system (or left contracts
    unbilled); the message says which. Everything else it did is committed."""
