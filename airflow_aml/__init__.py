"""airflow-aml."""
