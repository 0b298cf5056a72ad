"""Extra links from a task to the run, model, image or deployment it created.

The operator pushes the full URL to XCom under the link's ``xcom_key`` when it knows the id; the
Airflow API server reads it back from there (Airflow 3 resolves provider links through XCom, so
the web server never needs to import this package). The base URL is the connection's
``ui_base_url`` (the workspace UI/REST route served later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class _XComLink(BaseOperatorLink):
    name = ""

    @property
    def xcom_key(self) -> str:
        return f"_link_{type(self).__name__}"

    def persist(self, context: Any, url: str) -> None:
        context["ti"].xcom_push(key=self.xcom_key, value=url)

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return value if isinstance(value, str) else ""


class AmlRunLink(_XComLink):
    name = "AML Run"


class AmlModelLink(_XComLink):
    name = "AML Model"


class AmlImageLink(_XComLink):
    name = "AML Image"


class AmlDeploymentLink(_XComLink):
    name = "AML Deployment"
