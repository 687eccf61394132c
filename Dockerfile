# The w365 Airflow image: Apache Airflow's official image plus the w365 package.
#
# Built by `docker compose build` (docker-compose.yaml's `build:`); every Airflow service of the
# production topology runs it. Why an image of our own and not _PIP_ADDITIONAL_REQUIREMENTS:
# that variable reinstalls packages at every container start (Airflow's docs: "ONLY for quick
# checks"); extending the image is what Airflow recommends for anything else.
#
# What it adds:
#   * the runtime lock, requirements.txt: apache-airflow at the base image's version (checked
#     below before anything is installed, so the image's Airflow is never replaced) and every
#     library w365 and the topology use (SQLAlchemy, Alembic, pendulum, pandas, httpx, psycopg2,
#     asyncpg; celery, redis and the Celery provider for the workers), pinned to the versions
#     scripts/env.sh installs and the tests run on. Where a pin differs from the official image's
#     own (constraint-pinned) version, pip installs the pin; `pip check` must then be clean.
#     The lock's layer comes before the code's, so editing include/ does not reinstall it.
#   * the `w365` package and its `w365` console script (`w365 db upgrade`, `w365 invoice list`,
#     ...), installed with --no-deps: its dependencies are the lock's, installed just before.
#   * /opt/airflow/auth, the home of the SimpleAuthManager passwords file (a named volume).
#   * Pango and the DejaVu fonts, for the invoice PDFs (WeasyPrint; issue 16).
#
# The package is installed editable from /opt/airflow/include, the very path where
# docker-compose.yaml bind-mounts ./include: with the mount, the code you edit is the code that
# runs (like ./dags and ./plugins); without it (an image shipped on its own), the copy made here
# runs. There is never a second, stale copy in site-packages.
#
# The base image's Airflow version must equal the `apache-airflow==` pin in requirements.txt
# (tests/deployment/test_compose.py checks it; so does the build, below). Python 3.11 is the
# version requirements.txt is resolved and tested on.
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}

# The invoice PDF (issue 16): WeasyPrint lays text out with Pango, which the base image lacks;
# DejaVu is the document's font (its style sheet names it), so every worker renders alike;
# HarfBuzz's subsetter keeps only the glyphs used in the PDF.
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
 && apt-get clean && rm -rf /var/lib/apt/lists/*

USER airflow
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pinned="$(sed -n 's/^apache-airflow==//p' /opt/airflow/requirements.txt)" \
 && base="$(python -c 'from importlib.metadata import version; print(version("apache-airflow"))')" \
 && { [ "$base" = "$pinned" ] || { echo "the base image has Airflow $base, requirements.txt pins apache-airflow==$pinned" >&2; exit 1; }; } \
 && pip install --no-cache-dir -r /opt/airflow/requirements.txt
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
 && pip check \
 && python -c "import sqlalchemy, alembic, pendulum, pandas, httpx, psycopg2, celery, redis, airflow.providers.celery; import w365.interfaces.cli, w365.store.session, weasyprint" \
 && w365 --help >/dev/null \
 && mkdir -p /opt/airflow/auth
