# The w365 Airflow image: Apache Airflow's official image plus the w365 package.
#
# Built by `docker compose build` (docker-compose.yaml's `build:`); every Airflow service of the
# production topology runs it. Why an image of our own and not _PIP_ADDITIONAL_REQUIREMENTS:
# that variable reinstalls packages at every container start (Airflow's docs: "ONLY for quick
# checks"); extending the image is what Airflow recommends for anything else.
#
# What it adds:
#   * the `w365` package and its `w365` console script (`w365 db upgrade`, `w365 invoice list`,
#     ...), installed with --no-deps: everything w365 imports (SQLAlchemy, Alembic, pendulum,
#     pandas, httpx, psycopg2; celery and redis for the workers) already ships in the official
#     image, and --no-deps keeps the image's Airflow and its constraint-pinned libraries exactly
#     as Airflow released them. The build fails below if one of them is ever missing.
#   * /opt/airflow/auth, the home of the SimpleAuthManager passwords file (a named volume).
#
# The package is installed editable from /opt/airflow/include, the very path where
# docker-compose.yaml bind-mounts ./include: with the mount, the code you edit is the code that
# runs (like ./dags and ./plugins); without it (an image shipped on its own), the copy made here
# runs. There is never a second, stale copy in site-packages.
#
# The base image's Airflow version must equal the `apache-airflow==` pin in requirements.txt
# (tests/test_compose.py checks it). Python 3.11 is the version requirements.txt is tested on.
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}

USER airflow
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
 && python -c "import sqlalchemy, alembic, pendulum, pandas, httpx, psycopg2, celery, redis, airflow.providers.celery; import w365.cli, w365.db.session" \
 && w365 --help >/dev/null \
 && mkdir -p /opt/airflow/auth
