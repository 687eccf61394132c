# Source me: creates the virtualenv if needed and exports the embedded-default settings.
#   source scripts/env.sh
# Afterwards `airflow` sees dags/ and plugins/, and `w365` uses the SQLite store in .airflow/.
W365_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export W365_ROOT
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# The runtime lock (requirements.txt) for the quick start; the test and dev lock on top of it
# (requirements-dev.txt: pytest, hypothesis, selenium, ruff, mypy) with W365_DEV=1, which
# scripts/test.sh sets. .venv/.installed says which was installed, and when.
W365_LOCK=requirements.txt
[ "${W365_DEV:-}" != 1 ] || W365_LOCK=requirements-dev.txt
if [ "${W365_SKIP_INSTALL:-}" != 1 ] && { [ ! -x "$W365_ROOT/.venv/bin/python" ] || [ ! -e "$W365_ROOT/.venv/.installed" ] \
   || { [ "$W365_LOCK" = requirements-dev.txt ] && ! grep -qx "$W365_LOCK" "$W365_ROOT/.venv/.installed"; } \
   || [ "$W365_ROOT/requirements.txt" -nt "$W365_ROOT/.venv/.installed" ] || [ "$W365_ROOT/requirements-dev.txt" -nt "$W365_ROOT/.venv/.installed" ] \
   || [ "$W365_ROOT/pyproject.toml" -nt "$W365_ROOT/.venv/.installed" ]; }; then
  echo "w365: setting up $W365_ROOT/.venv from $W365_LOCK (first run takes about a minute)" >&2
  [ -x "$W365_ROOT/.venv/bin/python" ] || "$PYTHON" -m venv "$W365_ROOT/.venv"
  # A venv that had the dev lock keeps it: re-installing only the runtime lock would leave it stale.
  ! grep -qx requirements-dev.txt "$W365_ROOT/.venv/.installed" 2>/dev/null || W365_LOCK=requirements-dev.txt
  "$W365_ROOT/.venv/bin/python" -m pip install -q --upgrade pip >&2
  "$W365_ROOT/.venv/bin/python" -m pip install -q -r "$W365_ROOT/$W365_LOCK" >&2
  "$W365_ROOT/.venv/bin/python" -m pip install -q --no-deps -e "$W365_ROOT" >&2
  echo "$W365_LOCK" > "$W365_ROOT/.venv/.installed"
  # `source .venv/bin/activate` then brings these settings too.
  grep -q "scripts/env.sh" "$W365_ROOT/.venv/bin/activate" || \
    echo "[ -n \"\${W365_ENV_LOADED:-}\" ] || W365_SKIP_INSTALL=1 source \"$W365_ROOT/scripts/env.sh\"" >> "$W365_ROOT/.venv/bin/activate"
fi
export W365_ENV_LOADED=1
export PATH="$W365_ROOT/.venv/bin:$PATH"

# Embedded default: Airflow metadata and the billing store in SQLite, LocalExecutor.
export AIRFLOW_HOME="${AIRFLOW_HOME:-$W365_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$W365_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$W365_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES="False"
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin,viewer:viewer}"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
# Task runners reach the api-server's execution API here (follows a changed host or port).
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://${AIRFLOW__API__HOST}:${AIRFLOW__API__PORT}/execution/}"
# The tenant's time zone for DAG schedules ([w365] timezone); the demo tenant is in Los Angeles.
export AIRFLOW__W365__TIMEZONE="${AIRFLOW__W365__TIMEZONE:-America/Los_Angeles}"
# Dates given without an offset (`airflow backfill create --from-date 2026-01-01`, `dags trigger
# --logical-date`, ...) are read in the tenant's zone, like the schedules (docs/dags.md, Backfills).
export AIRFLOW__CORE__DEFAULT_TIMEZONE="${AIRFLOW__CORE__DEFAULT_TIMEZONE:-$AIRFLOW__W365__TIMEZONE}"
# Sizes for a laptop (issue 13; docs/deployment.md): Airflow's defaults fork 32 LocalExecutor
# workers at scheduler start (one per [core] parallelism slot), about 6 GB RSS in all.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"   # tasks at once = LocalExecutor workers
export AIRFLOW__API__WORKERS="${AIRFLOW__API__WORKERS:-1}"              # api-server worker processes
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="${AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES:-1}"  # DAG files parsed at once
mkdir -p "$AIRFLOW_HOME"

# The demo tenant's providers read export files written by `w365 demo provider-files` (only when
# that demo marker exists, and never over a connection you set yourself).
w365_demo_connections() {
  local files="$AIRFLOW_HOME/provider-files"
  [ -e "$files/.w365-demo" ] || return 0
  local conn
  for conn in partner_center distributor_files; do
    local var="AIRFLOW_CONN_$(echo "$conn" | tr '[:lower:]' '[:upper:]')"
    [ -n "${!var:-}" ] || export "$var={\"conn_type\": \"fs\", \"extra\": {\"path\": \"$files/$conn\"}}"
  done
}
w365_demo_connections
