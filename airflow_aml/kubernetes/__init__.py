"""Kubernetes objects shared by the ``kubernetes`` compute target and deployment target.

::

    manifests.py    Pod and Secret manifests built with the kubernetes client's models, labels
    validation.py   every manifest checked against a named Kubernetes version's JSON schema
    client.py       the calls, through the cncf-kubernetes provider's ``KubernetesHook``

Only pydantic-free basics here; the kubernetes client, the provider and kubernetes-validate are
imported when a manifest is built or a call is made, so importing this package needs neither.
"""

from airflow_aml.kubernetes.manifests import LABEL_RUN, LABEL_WORKSPACE, run_labels, run_selector

__all__ = ["LABEL_RUN", "LABEL_WORKSPACE", "run_labels", "run_selector"]
