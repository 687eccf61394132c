"""Who may see and do what on the w365 pages (docs/ui.md, "Security model").

* Every route needs a user Airflow authenticated (bearer token or the UI's ``_token`` cookie)
  who may see plugin views: ``requires_access_view(AccessView.PLUGINS)`` on the whole app.
  Airflow does not protect plugin apps by itself.
* Enabling/disabling a job is decided by Airflow itself: the toggle is Airflow's own
  ``PATCH /api/v2/dags/{dag_id}`` made with the caller's token (``airflow_api``), i.e. DAG edit
  permission (``requires_access_dag(method="PUT")``) on that DAG.
* Retrying or cancelling a scheduled change needs the same kind of permission on the DAG that
  merges them: edit (``PUT``) on ``scheduled_update`` (:data:`SLCL_DAG`). With SimpleAuthManager
  that is the roles user, op and admin; viewer only reads (SPEC J3). The default logins are
  ``admin`` and ``viewer``.
* Actions are POSTs that must carry the header ``X-W365-Action: 1`` (a cross-site form cannot set
  it, and a cross-origin script may not without a CORS preflight Airflow does not grant) and, when
  the browser sends an ``Origin``, come from this very host (:func:`same_origin_action`): the
  request's ``Host``, or what a proxy listed in ``[w365] trusted_proxies`` forwards
  (``w365.interfaces.web.security``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request, status

from w365.interfaces.web import security

ACTION_HEADER = "x-w365-action"
SLCL_DAG = "scheduled_update"  # retry/cancel of SLCLs = permission to edit this DAG


def view_dependencies() -> list[Any]:
    """App-wide: an authenticated Airflow user allowed to see plugin views (anonymous: 401)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view

    return [Depends(requires_access_view(AccessView.PLUGINS))]


def slcl_action_dependencies() -> list[Any]:
    """Retry/cancel: edit permission on the Scheduled Update DAG, checked by Airflow's auth
    manager (403 otherwise), plus the cross-site guard."""
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return [Depends(same_origin_action), Depends(requires_access_dag(method="PUT", param_dag_id=SLCL_DAG))]


def may_edit_dag(user: Any, dag_id: str) -> bool:
    """What Airflow would answer to this user editing ``dag_id`` (shown on the pages; the
    actions themselves are checked by Airflow, never by this)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    try:
        return bool(get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=dag_id), user=user))
    except Exception:  # noqa: BLE001 - an auth manager that cannot tell: show no edit controls as granted
        return False


def user_label(user: Any) -> dict[str, Any]:
    name = user.get_name() if hasattr(user, "get_name") else str(user)
    role = getattr(user, "role", None)
    return {"name": name, "role": str(role).lower() if role else None}


def same_origin_action(request: Request) -> None:
    """CSRF guard for the POST actions (see the module docstring)."""
    bearer = request.headers.get("authorization", "")[:7].lower() == "bearer "
    if not bearer and request.headers.get(ACTION_HEADER) != "1":
        # Cookie-authenticated: only our own page's script sets this header.
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"actions need the header {ACTION_HEADER}: 1 (sent by the w365 pages)")
    origin = request.headers.get("origin")
    # Compared with this request's own Host; X-Forwarded-Host/Forwarded only from a proxy in
    # [w365] trusted_proxies (issue 12): a client cannot vouch for its own origin.
    if origin and not security.same_origin(origin, request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin action refused")


def login_redirect(request: Request) -> str | None:
    """Where a browser that is not signed in is sent (Airflow's login, back here afterwards)."""
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # noqa: BLE001 - no auth manager: answer 401 as is
        return None

