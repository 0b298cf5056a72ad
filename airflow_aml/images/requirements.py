"""What an image's environment installs besides the user's requirements, for every builder.

The scoring server (``airflow_aml.runtime.scoring``) runs on FastAPI and uvicorn and imports
``airflow_aml.runtime``; a built-in scorer needs its framework. Each distribution is pinned to the
version installed in this environment (the code is known to work with it; for the sklearn scorer
a pickled model also needs the scikit-learn that pickled it), and a user requirement naming the
same package wins, as for run environments (``compute.environments.runtime_requirements``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from airflow_aml.compute.environments import runtime_requirements

# The scoring server's own stack. httptools and uvloop are uvicorn's fast HTTP parser and event
# loop ("uvicorn[standard]"): without them a replica ran on h11 and asyncio's pure-Python loop,
# which the profile under load showed as the largest share of a replica's per-request CPU.
SCORING_DISTRIBUTIONS: tuple[str, ...] = ("fastapi", "starlette", "uvicorn", "httptools", "uvloop", "pydantic")
BUILTIN_SCORER_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "sklearn": ("scikit-learn", "scipy", "numpy", "joblib"),
    "onnx": ("onnxruntime", "numpy"),
}
# What a built environment must import, checked once after it is built.
SCORING_IMPORTS: tuple[str, ...] = ("airflow_aml.runtime", "fastapi", "uvicorn")
BUILTIN_SCORER_IMPORTS: dict[str, tuple[str, ...]] = {
    "sklearn": ("sklearn", "numpy", "joblib"),
    "onnx": ("onnxruntime", "numpy"),
}
SCORING_SERVER_MODULE = "airflow_aml.runtime.scoring"


def image_runtime_requirements(user_requirements: Sequence[str], builtin_scorer: str | None) -> list[str]:
    """Pinned lines for the runtime, the scoring server and the built-in scorer, minus the user's."""
    extra = [*SCORING_DISTRIBUTIONS, *BUILTIN_SCORER_DISTRIBUTIONS.get(builtin_scorer or "", ())]
    return runtime_requirements(list(user_requirements), extra=extra)


def image_probe_imports(builtin_scorer: str | None) -> list[str]:
    """Modules a built image environment must import. The scoring server's own module is included
    once it exists in this installation (it ships with airflow_aml, through the ``.pth`` shim)."""
    modules = [*SCORING_IMPORTS, *BUILTIN_SCORER_IMPORTS.get(builtin_scorer or "", ())]
    if importlib.util.find_spec(SCORING_SERVER_MODULE) is not None:
        modules.append(SCORING_SERVER_MODULE)
    return modules


def current_python() -> str:
    """``"3.11"``: the Python of this interpreter, the default of an image's environment."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"
