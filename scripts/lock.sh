#!/usr/bin/env bash
# Regenerate the pinned locks from pyproject.toml (issue 14), each in a fresh virtualenv on Python 3.11:
#   requirements.txt      the runtime lock: what pip installs for pyproject's `dependencies`
#                         (apache-airflow==3.3.2 and w365's own), i.e. what `pip install .` resolves
#   requirements-dev.txt  `-r requirements.txt` plus what the `dev` extra adds (tests, linters)
#   bash scripts/lock.sh             # after a change to pyproject.toml: keeps every pin pip still agrees with
#   bash scripts/lock.sh --upgrade   # the newest versions pyproject.toml allows (hypothesis keeps its pin)
# Airflow's published constraints files are not used: pip resolves, then `pip check` must be clean.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
UPGRADE=0
case "${1:-}" in
  --upgrade) UPGRADE=1 ;;
  "") ;;
  *) echo "error: unknown argument $1 (bash scripts/lock.sh [--upgrade])" >&2; exit 2 ;;
esac
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# pyproject's requirements as requirement files; w365 itself is not built.
"$PYTHON" - "$ROOT/pyproject.toml" "$TMP" <<'PY'
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())["project"]
out = pathlib.Path(sys.argv[2])
(out / "runtime.in").write_text("\n".join(project["dependencies"]) + "\n")
(out / "dev.in").write_text("\n".join(project["optional-dependencies"]["dev"]) + "\n")
PY
# The current pins as constraints (nested `-r` lines dropped: in a constraints file pip would read
# them as requirements); with --upgrade only hypothesis's.
{ [ ! -e "$ROOT/requirements-dev.txt" ] || grep -v '^-r' "$ROOT/requirements-dev.txt" || true; } > "$TMP/dev-pins.txt"
if [ "$UPGRADE" = 1 ]; then
  grep '^hypothesis==' "$TMP/dev-pins.txt" > "$TMP/keep.txt" || true
  CONSTRAINTS=(-c "$TMP/keep.txt")
else
  CONSTRAINTS=(-c "$ROOT/requirements.txt" -c "$TMP/dev-pins.txt")
fi

# install KIND: a fresh venv with the requirements of KIND (runtime, or runtime+dev), pip check, pins.
install() {
  local venv="$TMP/venv-$1"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  local files=(-r "$TMP/runtime.in")
  [ "$1" = runtime ] || files+=(-r "$TMP/dev.in")
  "$venv/bin/python" -m pip install -q "${CONSTRAINTS[@]}" "${files[@]}" >&2
  "$venv/bin/python" -m pip check >&2
  "$venv/bin/python" -m pip freeze
}
echo "w365: resolving the runtime lock" >&2
install runtime > "$TMP/runtime.txt"
echo "w365: resolving the dev lock" >&2
install dev > "$TMP/all.txt"
if grep -vxF -f "$TMP/all.txt" "$TMP/runtime.txt"; then
  echo "error: the dev set changes the runtime pins above; constrain them in pyproject.toml" >&2
  exit 1
fi

{
  echo "# The runtime lock (issue 14): every distribution that pyproject.toml's [project] dependencies"
  echo "# (apache-airflow==3.3.2, its providers, w365's own libraries) install, pinned: resolved by pip in"
  echo "# a fresh Python 3.11 virtualenv, the previous pins kept where pip agrees, then \`pip check\`ed."
  echo "# Airflow's published constraints files are not used. Installed by scripts/env.sh (quick start)"
  echo "# and the Dockerfile. Regenerate it (and requirements-dev.txt) after changing pyproject.toml:"
  echo "#   bash scripts/lock.sh              # keeps the pins pip still agrees with"
  echo "#   bash scripts/lock.sh --upgrade    # the newest versions pyproject.toml allows"
  cat "$TMP/runtime.txt"
} > "$ROOT/requirements.txt"
{
  echo "# The test and development lock (issue 14): the runtime lock plus, pinned, what pyproject.toml's"
  echo "# \`dev\` extra adds (pytest, hypothesis, ruff, mypy, selenium for the browser tests), resolved"
  echo "# together in a fresh Python 3.11 virtualenv and \`pip check\`ed. Installed by"
  echo "# scripts/env.sh for scripts/test.sh (or with W365_DEV=1). Regenerate: bash scripts/lock.sh"
  echo "-r requirements.txt"
  grep -vxF -f "$TMP/runtime.txt" "$TMP/all.txt"
} > "$ROOT/requirements-dev.txt"
echo "w365: wrote requirements.txt ($(grep -c '^[^#-]' "$ROOT/requirements.txt") pins) and requirements-dev.txt ($(grep -c '^[^#-]' "$ROOT/requirements-dev.txt") more)" >&2
