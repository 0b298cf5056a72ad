"""The environment variables that tell a script which run it belongs to.

A compute target sets them when it starts a script; ``Run.get_context()`` reads them. Kept in a
module of their own, with no imports, so that launchers and the runtime agree on one spelling.
"""

from __future__ import annotations

ENV_RUN_ID = "AML_RUN_ID"
ENV_WORKSPACE = "AML_WORKSPACE"
ENV_STORE_URI = "AML_STORE_URI"
ENV_PRINCIPAL = "AML_PRINCIPAL"
ENV_HOME = "AML_HOME"
# Set on a sweep's child processes: the parent run id, for scripts that want it.
ENV_PARENT_RUN_ID = "AML_PARENT_RUN_ID"

IDENTITY_VARIABLES = (ENV_RUN_ID, ENV_WORKSPACE, ENV_STORE_URI, ENV_PRINCIPAL, ENV_HOME, ENV_PARENT_RUN_ID)
