"""Who is calling the workspace service: the result of authenticating one request.

Three kinds of caller, one record:

- ``personal``: a personal access token (``airflow-aml token create``), acting as its principal;
- ``run``: a run token, minted when a run is submitted and handed to its compute target; it acts
  for the run's submitter but only on that run and its children, only while the run is not
  terminal, and reads only the secrets named when it was minted;
- ``airflow``: Airflow's signed-in user, when the service is mounted inside Airflow's api-server.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request


class IdentityKind(enum.StrEnum):
    PERSONAL = "personal"
    RUN = "run"
    AIRFLOW = "airflow"


@dataclass(frozen=True)
class Identity:
    principal: str
    kind: IdentityKind
    token_id: str | None = None
    run_id: str | None = None  # run tokens: the run they were minted for
    workspace: str | None = None  # run tokens: that run's workspace
    secrets: frozenset[str] = field(default_factory=frozenset)  # run tokens: the secrets they may read

    @property
    def is_run_token(self) -> bool:
        return self.kind is IdentityKind.RUN


# How a deployment of the service authenticates a request: the identity, or None when the request
# carries no credentials this authenticator accepts (the service then answers 401). It raises
# ``AuthenticationError`` for credentials it recognises but rejects (expired, revoked, bad signature).
Authenticator = Callable[[Request], Awaitable[Identity | None]]
