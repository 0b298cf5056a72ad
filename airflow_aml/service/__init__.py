"""The workspace service: a REST API over a shared workspace (``create_app``), its tokens and
authorization. See ``airflow_aml.service.app``."""
