"""The HTTP calls the SDK makes to a running web service: scoring, and confirming a new key.

A deployment's front answers on ``http://127.0.0.1:<port>``; ``Deployment.run`` and
``Deployment.regenerate_key`` use these with the deployment's own key.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from airflow_aml.exceptions import DeploymentError

# httpx is imported by the two calls below, not with the SDK: most processes that import the
# deployments never score (a training task, the CLI listing runs).


def score(name: str, scoring_uri: str, input_data: Any, *, key: str | None, timeout: float) -> Any:
    """POST ``input_data`` as JSON to ``scoring_uri``; the decoded answer, or DeploymentError."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.post(scoring_uri, json=input_data, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise DeploymentError(f"Deployment '{name}' at {scoring_uri} did not answer: {exc}", deployment=name) from exc
    if response.status_code != 200:
        raise DeploymentError(f"Deployment '{name}' answered {response.status_code}: {response.text[:500]}",
                              deployment=name)
    return response.json()


def confirm_key(name: str, base_url: str, key: str, *, replicas: int, timeout: float) -> None:
    """Poll until the service takes ``key`` (the replicas re-read their config every 0.5 s)."""
    import httpx

    deadline = time.monotonic() + timeout
    url = base_url + "/metrics"
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            # Every replica must know the new key: ask as many times as there are replicas, in a row.
            if all(httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=2).status_code == 200
                   for _ in range(max(1, replicas) * 2)):
                return
        time.sleep(0.1)
    raise DeploymentError(f"Deployment '{name}' did not take the new key within {timeout} s", deployment=name)
