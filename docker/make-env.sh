#!/usr/bin/env bash
# Writes .env for docker-compose.yaml from .env.example, with fresh random secrets and your user
# id. Leaves an existing file alone. Prints no secret.
#   bash docker/make-env.sh            # writes .env next to docker-compose.yaml
#   bash docker/make-env.sh PATH       # writes PATH instead (e.g. to look at the result)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="${1:-$root/.env}"
if [ -e "$env_file" ]; then
  echo "$env_file exists; not touching it" >&2
  exit 0
fi
py="$(command -v python3 || command -v python)"
# URL-safe (letters, digits, - and _): the passwords go into connection URLs as they are.
secret() { "$py" -c "import secrets; print(secrets.token_urlsafe(32))"; }
fernet="$("$py" -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())")"
# Your uid, so files in ./logs and ./config stay yours; as root, the image's airflow user instead.
uid="$(id -u)"
[ "$uid" != 0 ] || uid=50000
umask 077
sed -e "s|^AIRFLOW_UID=.*|AIRFLOW_UID=$uid|" \
    -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$(secret)|" \
    -e "s|^W365_DB_PASSWORD=.*|W365_DB_PASSWORD=$(secret)|" \
    -e "s|^REDIS_PASSWORD=.*|REDIS_PASSWORD=$(secret)|" \
    -e "s|^AIRFLOW_FERNET_KEY=.*|AIRFLOW_FERNET_KEY=$fernet|" \
    -e "s|^AIRFLOW_JWT_SECRET=.*|AIRFLOW_JWT_SECRET=$(secret)|" \
    -e "s|^AIRFLOW_API_SECRET_KEY=.*|AIRFLOW_API_SECRET_KEY=$(secret)|" \
    -e "s|^AIRFLOW_ADMIN_PASSWORD=.*|AIRFLOW_ADMIN_PASSWORD=$(secret)|" \
    -e "s|^AIRFLOW_VIEWER_PASSWORD=.*|AIRFLOW_VIEWER_PASSWORD=$(secret)|" \
    -e "s|^FLOWER_BASIC_AUTH=.*|FLOWER_BASIC_AUTH=flower:$(secret)|" \
    "$root/.env.example" >"$env_file"
# Every setting left empty in .env.example is a secret: none may stay empty.
if empty="$(grep -E '^[A-Za-z_][A-Za-z0-9_]*=$' "$env_file")"; then
  rm -f "$env_file"
  echo "make-env.sh does not generate: ${empty//$'\n'/ } (add it above); no .env written" >&2
  exit 1
fi
echo "wrote $env_file: fresh secrets (not shown; the logins are admin and viewer, passwords in the file)" >&2
if [ -z "${1:-}" ] && command -v git >/dev/null 2>&1 && git -C "$root" rev-parse --git-dir >/dev/null 2>&1 \
   && ! git -C "$root" check-ignore -q "$env_file"; then
  echo "WARNING: .env is not git-ignored: add '.env' to .gitignore before committing anything" >&2
fi
