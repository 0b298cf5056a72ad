"""A real container registry on 127.0.0.1 for tests: Debian's ``docker-registry`` (CNCF
distribution), as ``scripts/docker-service.sh`` installs it. The engine trusts a loopback registry
without TLS. Its access log is how a test sees what the engine asked of it (``GET /v2/`` is a login).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.unit.service.served import free_port


@dataclass(frozen=True)
class Registry:
    host: str
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def requests(self) -> list[str]:
        """The access log's request lines (``GET /v2/ HTTP/1.1`` ...)."""
        return [line.split('"')[1] for line in self.log.read_text().splitlines() if line.count('"') >= 2
                and line.split('"')[1].split(" ")[0] in {"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"}]


@contextmanager
def local_registry(folder: Path) -> Iterator[Registry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (scripts/docker-service.sh installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = folder / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield Registry("127.0.0.1", port, log)
    finally:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()
