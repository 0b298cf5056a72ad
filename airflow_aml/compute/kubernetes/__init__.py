"""The ``kubernetes`` compute target: a run's script in a Pod, through ``KubernetesHook``.

::

    config.py       KubernetesComputeConfig: namespace, image, resources, node selector, ...
    pod_run.py      PodRun: secret -> pod -> status -> logs -> delete, reattach by label
    pod.py          what the pod runs: snapshot from the service, the script, outputs/ uploaded
    supervisor.py   KubernetesSupervisor: the local supervisor with the script in a pod
    target.py       KubernetesComputeTarget and its registration as the ``kubernetes`` kind

The manifests, their validation and the API calls are in :mod:`airflow_aml.kubernetes`.
"""

from airflow_aml.compute.kubernetes.config import KubernetesComputeConfig
from airflow_aml.compute.kubernetes.target import KubernetesComputeTarget

__all__ = ["KubernetesComputeConfig", "KubernetesComputeTarget"]
