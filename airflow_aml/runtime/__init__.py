"""What runs inside a compute target or an image. Imports no Airflow and no SQL layer.

    from airflow_aml.runtime import Run
    run = Run.get_context()
    run.log("accuracy", 0.93)
"""

from airflow_aml.runtime.logger import RunLogger
from airflow_aml.runtime.offline import OfflineRun
from airflow_aml.runtime.run import Run

__all__ = ["OfflineRun", "Run", "RunLogger"]
