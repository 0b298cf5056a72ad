"""``python -m airflow_aml.cli``: the same as the ``airflow-aml`` command."""

from airflow_aml.cli import main

main()
