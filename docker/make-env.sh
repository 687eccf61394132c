#!/usr/bin/env bash
# Writes .env for docker-compose.yaml from docker/env.example, with fresh random secrets and your
# user id. Leaves an existing .env alone.
#   bash docker/make-env.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="$root/.env"
if [ -e "$env_file" ]; then
  echo "$env_file exists; not touching it" >&2
  exit 0
fi
py="$(command -v python3 || command -v python)"
secret() { "$py" -c "import secrets; print(secrets.token_urlsafe(32))"; }
fernet="$("$py" -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())")"
# Your uid, so files in ./logs and ./config stay yours; as root, the image's airflow user instead.
uid="$(id -u)"
[ "$uid" != 0 ] || uid=50000
umask 077
sed -e "s|^AIRFLOW_UID=.*|AIRFLOW_UID=$uid|" \
    -e "s|^AIRFLOW_FERNET_KEY=.*|AIRFLOW_FERNET_KEY=$fernet|" \
    -e "s|^AIRFLOW_JWT_SECRET=.*|AIRFLOW_JWT_SECRET=$(secret)|" \
    -e "s|^AIRFLOW_API_SECRET_KEY=.*|AIRFLOW_API_SECRET_KEY=$(secret)|" \
    -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$(secret)|" \
    -e "s|^W365_DB_PASSWORD=.*|W365_DB_PASSWORD=$(secret)|" \
    "$root/docker/env.example" >"$env_file"
echo "wrote $env_file (secrets generated; keep it out of git)" >&2
if command -v git >/dev/null 2>&1 && git -C "$root" rev-parse --git-dir >/dev/null 2>&1 \
   && ! git -C "$root" check-ignore -q "$env_file"; then
  echo "WARNING: .env is not git-ignored: add '.env' to .gitignore before committing anything" >&2
fi
