#!/usr/bin/env bash
# Stop the embedded default started by scripts/start.sh (foreground or --background): the
# supervisor whose pid is in $AIRFLOW_HOME/w365-airflow.pid stops the scheduler, triggerer and
# dag-processor, then the api-server, then kills whatever is left of its process tree (running
# tasks get W365_STOP_GRACE seconds, default 20). Only this deployment's processes, never
# another Airflow. `bash scripts/stop.sh --status` says whether it runs and what.
set -euo pipefail
W365_SKIP_INSTALL=1 source "$(dirname "$0")/env.sh"
cd "$W365_ROOT"
if [ ! -x "$W365_ROOT/.venv/bin/python" ]; then
  echo "w365 | not running (no .venv: scripts/start.sh never ran here)"; exit 0
fi
case "${1:-}" in
  --status|status) exec python scripts/supervisor.py status ;;
  "") exec python scripts/supervisor.py stop ;;
  *) echo "error: unknown argument $1 (bash scripts/stop.sh [--status])" >&2; exit 2 ;;
esac
