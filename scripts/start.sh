#!/usr/bin/env bash
# Quick start, command 1: set everything up on the embedded default (SQLite, LocalExecutor),
# load the demo tenant, run the main job once, then start Airflow: the api-server first, the
# scheduler, dag-processor and triggerer once it answers (scripts/supervisor.py, issue 13).
#   bash scripts/start.sh                 # in the foreground: Ctrl-C stops everything
#   bash scripts/start.sh --background    # returns once Airflow is ready; bash scripts/stop.sh stops it
# Each component logs to $AIRFLOW_HOME/logs/<component>.log (tail -f .airflow/logs/*.log).
set -euo pipefail
BACKGROUND=0
for arg in "$@"; do
  case "$arg" in
    --background|-d) BACKGROUND=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $arg (bash scripts/start.sh [--background])" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/env.sh"
cd "$W365_ROOT"
# Already running (this AIRFLOW_HOME), or the port taken by something else: say so before any setup.
python scripts/supervisor.py preflight || { [ $? -eq 3 ] && exit 0; exit 1; }

echo "== migrating Airflow's metadata database ($AIRFLOW_HOME/airflow.db)"
airflow db migrate >/dev/null
# Provider-calling tasks share this pool (docs/dags.md); without it Airflow never schedules them.
echo "== pool w365_provider_api (concurrent provider API calls: size it to the rate limit)"
airflow pools get w365_provider_api >/dev/null 2>&1 \
  || airflow pools set w365_provider_api "${W365_PROVIDER_POOL_SLOTS:-4}" "Partner Center rate limit" >/dev/null
echo "== migrating the billing store"
w365 db upgrade
if [ "$(w365 tenant show --json | python -c 'import json,sys; print(json.load(sys.stdin)["name"])')" = "default" ]; then
  # The demo tenant as it is after a year of operation: the real jobs run day by day over the
  # past W365_DEMO_HISTORY_DAYS days (invoices across months, merges, change-log invoices,
  # a metrics snapshot a day). About 20 s for 365 days.
  echo "== loading the demo tenant with ${W365_DEMO_HISTORY_DAYS:-365} days of history"
  w365 demo load --timezone "$AIRFLOW__W365__TIMEZONE" --history-days "${W365_DEMO_HISTORY_DAYS:-365}"
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
if [ "$BACKGROUND" = 1 ]; then
  exec python scripts/supervisor.py start
fi
exec python scripts/supervisor.py run
