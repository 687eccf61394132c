"""w365: billing automation for Microsoft CSPs on Apache Airflow."""

__version__ = "0.1.0"
