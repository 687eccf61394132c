#!/usr/bin/env bash
# Quick start, command 1: set everything up on the embedded default (SQLite, LocalExecutor),
# load the demo tenant, run the main job once, then start `airflow standalone`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$W365_ROOT"

echo "== migrating Airflow's metadata database ($AIRFLOW_HOME/airflow.db)"
airflow db migrate >/dev/null
# Provider-calling tasks share this pool (docs/dags.md); without it Airflow never schedules them.
echo "== pool w365_provider_api (concurrent provider API calls: size it to the rate limit)"
airflow pools get w365_provider_api >/dev/null 2>&1 \
  || airflow pools set w365_provider_api "${W365_PROVIDER_POOL_SLOTS:-4}" "Partner Center rate limit" >/dev/null
echo "== migrating the billing store"
w365 db upgrade
if [ "$(w365 tenant show --json | python -c 'import json,sys; print(json.load(sys.stdin)["name"])')" = "default" ]; then
  echo "== loading the demo tenant"
  w365 demo load --timezone "$AIRFLOW__W365__TIMEZONE"
  w365 demo provider-files "$AIRFLOW_HOME/provider-files"
  w365_demo_connections
fi

# Logins: admin (toggles jobs, retries SLCLs) and viewer (reads only). Passwords are generated
# once, kept in this file, and never committed.
PASSFILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
if [ ! -s "$PASSFILE" ]; then
  python - "$PASSFILE" <<'PY'
import json, secrets, sys
json.dump({"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12)}, open(sys.argv[1], "w"))
PY
  chmod 600 "$PASSFILE"
fi

echo "== running the main job once: Generate Full Cycle Invoice - Monthly Contracts"
airflow dags reserialize >/dev/null 2>&1 || true
airflow dags test generate_full_cycle_invoice_monthly "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)" >"$AIRFLOW_HOME/first-run.log" 2>&1 \
  || { echo "the first run failed; see $AIRFLOW_HOME/first-run.log"; exit 1; }
w365 invoice list --limit 10

URL="http://${AIRFLOW__API__HOST}:${AIRFLOW__API__PORT}"
python - "$PASSFILE" "$URL" <<'PY'
import json, sys
pw = json.load(open(sys.argv[1]))
print(f"""
== Airflow is starting at {sys.argv[2]}  (about a minute)
   login: admin / {pw['admin']}     (can toggle jobs, retry/cancel SLCLs)
   login: viewer / {pw['viewer']}    (read only)
   passwords are kept in {sys.argv[1]}
   W365 pages: {sys.argv[2]}/w365/   CLI: source .venv/bin/activate && w365 --help
""")
PY
exec airflow standalone
