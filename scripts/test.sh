#!/usr/bin/env bash
# Quick start, command 2: set up the environment if needed and run the whole test suite.
# PostgreSQL tests run when W365_TEST_DATABASE_URL is set (e.g. postgresql://postgres@127.0.0.1:5432/test).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$W365_ROOT"
# Tests build their own Airflow home and billing stores; nothing here touches .airflow/.
unset AIRFLOW_HOME W365_DATABASE_URL
exec python -m pytest "$@"
