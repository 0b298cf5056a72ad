"""What runs inside a compute target or an image. Imports no Airflow.

    from airflow_aml.runtime import Run
    run = Run.get_context()
    run.log("accuracy", 0.93)
"""

from airflow_aml.runtime.run import OfflineRun, Run

__all__ = ["OfflineRun", "Run"]
