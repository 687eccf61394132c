"""No run of a w365 job dated in the future (issue 13).

Airflow's scheduler does not schedule the tasks of a DAG run whose logical date is still ahead
(``SchedulerJobRunner``: "Logical date is in future"). A manual trigger given a future logical
date therefore sits "running" without starting anything until that date, and since every w365
DAG has ``max_active_runs=1`` it blocks all the job's later runs, scheduled ones included.

Two guards, one message (:func:`future_refusal`):

* :class:`FutureRunGuard`, an ASGI middleware the plugin (``plugins/w365_ui.py``) installs in the
  api-server, answers ``400`` to ``POST /api/v2/dags/{dag_id}/dagRuns`` for a catalogue DAG with
  a ``logical_date`` ahead of now: Airflow's Trigger form (and any REST client) shows the message
  and no run is created. Backfills of future dates Airflow refuses itself.
* ``w365.orchestration.airflow_support.check_not_future``, in the first task of every run, fails a run that got
  to its tasks anyway (``airflow dags test``, ``dag.test()``, a trigger that did not go through the
  api-server, a worker whose clock lags the scheduler's).

Standard library and ``w365.orchestration.catalogue`` only: Airflow imports plugins in every component.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from w365.orchestration import catalogue

FUTURE_TOLERANCE = timedelta(minutes=5)  # clocks of different machines; not a way to bill ahead
TRIGGER_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/?$")
MAX_BODY = 1 << 20  # a trigger's JSON; anything larger is left to Airflow to refuse


def future_refusal(dag_id: str, logical: datetime, now: datetime) -> str:
    """The one message for a run dated in the future (the api-server's guard, the first task)."""
    job = catalogue.BY_DAG_ID.get(dag_id)
    name = job.name if job else dag_id
    ahead = " To bill ahead, use the param advance_days." if job and "advance_days" in job.params else ""
    return (
        f"refused: the logical date {_utc(logical)} is in the future (now is {_utc(now)}). "
        f"{name} works as of its run's logical date, and Airflow does not start a run dated ahead: it would stay "
        "\"running\" and block this job's later runs (max_active_runs=1). Trigger it without a logical date (it "
        f"runs as of now) or with one that has passed.{ahead}"
    )


def is_future(logical: datetime, now: datetime) -> bool:
    return logical > now + FUTURE_TOLERANCE


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None  # Airflow answers 422 for it
    return when if when.tzinfo is not None else None  # naive: Airflow refuses it (AwareDatetime)


class FutureRunGuard:
    """ASGI middleware: refuses a trigger of a catalogue DAG with a future logical date (400,
    ``{"detail": ...}`` as Airflow's own API errors). Every other request passes untouched; only
    a POST to a trigger path is read (and then replayed to Airflow)."""

    def __init__(self, app: Any, clock: Callable[[], datetime] | None = None) -> None:
        self.app = app
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = TRIGGER_PATH.search(scope.get("path", "")) if scope.get("type") == "http" and scope.get("method") == "POST" else None
        if match is None or match["dag_id"] not in catalogue.BY_DAG_ID:
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > MAX_BODY:
                break
        logical = None
        if len(body) <= MAX_BODY:
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                data = None
            logical = _instant(data.get("logical_date")) if isinstance(data, dict) else None
        now = self.clock()
        if logical is not None and is_future(logical, now):
            payload = json.dumps({"detail": future_refusal(match["dag_id"], logical, now)}).encode("utf-8")
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
