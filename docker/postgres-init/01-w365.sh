#!/usr/bin/env bash
# Creates the billing store's database next to Airflow's metadata database.
#
# Mounted at /docker-entrypoint-initdb.d by docker-compose.yaml; the postgres image runs it once,
# when it initialises an empty data volume (it does NOT run again on an existing volume: there,
# run the same statements by hand, see docs/deployment.md).
#
#   database  airflow  owner airflow  Airflow's metadata (POSTGRES_DB / POSTGRES_USER)
#   database  w365     owner w365     the billing store (W365_DB_PASSWORD), migrated by `w365 db upgrade`
#
# A role of its own keeps the billing store's credentials (the `w365_billing` connection) from
# reaching Airflow's metadata, and Airflow's from reaching the billing store.
set -euo pipefail

: "${W365_DB_PASSWORD:?W365_DB_PASSWORD is not set on the postgres service}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v w365_password="$W365_DB_PASSWORD" <<'SQL'
CREATE ROLE w365 LOGIN PASSWORD :'w365_password';
CREATE DATABASE w365 OWNER w365 ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE w365 FROM PUBLIC;
\connect w365
ALTER SCHEMA public OWNER TO w365;
SQL
