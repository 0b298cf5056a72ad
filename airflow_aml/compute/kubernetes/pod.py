"""``python -m airflow_aml.compute.kubernetes.pod SCRIPT ARGS...``: what the run's pod runs.

The pod has no access to the submitting machine: it restores the run's snapshot from the
workspace service (with the run token from its Secret), runs the script in it, and uploads
``outputs/`` into the run, so the image needs Python and airflow-aml only, not the code.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from airflow_aml.runtime.run import Run

    if not argv:
        print("usage: python -m airflow_aml.compute.kubernetes.pod SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    run = Run.get_context(allow_offline=False)
    work = Path(os.environ.get("AML_WORK_DIR", "/tmp/aml/work"))
    work.mkdir(parents=True, exist_ok=True)
    run.restore_snapshot(work)
    os.chdir(work)
    sys.path.insert(0, str(work))
    sys.argv = list(argv)
    code = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        if (work / "outputs").is_dir():
            run.upload_folder("outputs", work / "outputs")
        run.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
