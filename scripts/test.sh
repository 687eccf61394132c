#!/usr/bin/env bash
# Quick start, command 2: set up the environment if needed and run the whole test suite.
# PostgreSQL tests run when W365_TEST_DATABASE_URL is set (e.g. postgresql://postgres@127.0.0.1:5432/test).
set -euo pipefail
# The tests need the dev lock too (requirements-dev.txt: pytest, hypothesis, selenium, ...).
export W365_DEV=1
source "$(dirname "$0")/env.sh"
cd "$W365_ROOT"
# Tests build their own Airflow home and billing stores; nothing here touches .airflow/.
unset AIRFLOW_HOME W365_DATABASE_URL
# The checks first, whatever the arguments (configured in pyproject.toml; both in requirements-dev.txt).
for tool in ruff mypy; do
  python -m "$tool" --version >/dev/null 2>&1 || { echo "test.sh: $tool is not installed in .venv (pip install -r requirements-dev.txt)" >&2; exit 1; }
done
python -m ruff check --quiet || { echo "test.sh: ruff check failed (above); the tests did not run" >&2; exit 1; }
python -m mypy || { echo "test.sh: mypy failed (above); the tests did not run" >&2; exit 1; }
exec python -m pytest "$@"
