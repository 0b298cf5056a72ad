"""``python -m airflow_aml.runtime.scoring --bundle DIR --host 127.0.0.1 --port N [--config FILE] [--workers 1]``.

The container's entry point. The bundle and the config are checked before uvicorn starts, so a
broken image fails with one clear line instead of a worker traceback. The process runs in the
bundle's ``app/`` folder, as an Azure ML scoring container does, so that ``run()`` too may open
files relative to it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from airflow_aml.exceptions import ValidationError
from airflow_aml.runtime.model import ENV_BUNDLE_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_aml.runtime.scoring", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="the image bundle folder (with image.json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--config", help="ScoringConfig JSON file, re-read when it changes (key rotation)")
    parser.add_argument("--workers", type=int, default=1, help="processes; each counts its own /metrics")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--header-timeout", type=float, default=None,
                        help="seconds a request's headers may take to arrive before a 408 (default 10)")
    parser.add_argument("--max-idle-connections", type=int, default=None,
                        help="connections waiting without a request; beyond, the oldest is closed (default 256)")
    args = parser.parse_args(argv)

    from airflow_aml.runtime.scoring.app import ENV_CONFIG_PATH, ENV_LOG_LEVEL
    from airflow_aml.runtime.scoring.bundle import APP_DIR, read_manifest
    from airflow_aml.runtime.scoring.config import load_config

    bundle = Path(args.bundle).resolve()
    config = Path(args.config).resolve() if args.config else None
    try:
        read_manifest(bundle)
        if config is not None:
            load_config(config)
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if (args.header_timeout is not None and args.header_timeout <= 0) or (
            args.max_idle_connections is not None and args.max_idle_connections < 1):
        print("error: --header-timeout must be above 0 and --max-idle-connections at least 1", file=sys.stderr)
        return 2

    from airflow_aml.runtime.scoring.connections import ENV_HEADER_TIMEOUT, ENV_MAX_IDLE_CONNECTIONS, GUARDED_PROTOCOL

    # Through the environment, because uvicorn builds the app in each worker process.
    os.environ[ENV_BUNDLE_DIR] = str(bundle)
    if config is not None:
        os.environ[ENV_CONFIG_PATH] = str(config)
    else:
        os.environ.pop(ENV_CONFIG_PATH, None)
    os.environ[ENV_LOG_LEVEL] = args.log_level
    if args.header_timeout is not None:
        os.environ[ENV_HEADER_TIMEOUT] = str(args.header_timeout)
    if args.max_idle_connections is not None:
        os.environ[ENV_MAX_IDLE_CONNECTIONS] = str(args.max_idle_connections)
    if (bundle / APP_DIR).is_dir():
        os.chdir(bundle / APP_DIR)

    import uvicorn

    uvicorn.run(
        "airflow_aml.runtime.scoring.app:create_app_from_env", factory=True,
        host=args.host, port=args.port, workers=args.workers, log_level=args.log_level,
        http=GUARDED_PROTOCOL,  # header deadline and waiting-connection cap (see connections.py)
        access_log=False,  # a log line per request costs more than the rest of the request path
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
