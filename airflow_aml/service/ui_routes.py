"""The workspace UI's static files at ``/ui/`` (the bundle ``ui/`` builds into ``ui_static/``).

The files are the same for everybody and carry no data, so they are readable without a token: the
page then asks ``/api/v1`` for everything with the caller's own credentials (a personal access
token standalone, Airflow's cookie when mounted in Airflow's api-server). Inside Airflow the
plugin's ``react_apps`` entry loads ``/aml/ui/aml-ui.js`` from here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from airflow_aml.store.http.errors import error_body

UI_DIR = Path(__file__).with_name("ui_static")
BUNDLE = "aml-ui.js"
# The page loads only its own script and talks only to its own origin; styles are injected by the
# bundle (a <style> element, uPlot's inline sizes), hence 'unsafe-inline' for styles alone.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
)


def bundle_built(directory: Path = UI_DIR) -> bool:
    return (directory / BUNDLE).is_file() and (directory / "index.html").is_file()


class UiFiles(StaticFiles):
    """The built bundle; a clear 404 naming the build step when the package ships without it.
    Every answer is revalidated (no-cache), so a rebuilt bundle is picked up on the next load."""

    def __init__(self, directory: Path = UI_DIR) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self._directory = directory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not bundle_built(self._directory):
            missing = JSONResponse(error_body("NotFoundError", (
                "The workspace UI is not built into this installation: run scripts/setup.sh, or "
                "`npm ci && npm run build` in ui/, then restart the service"
            )), status_code=404)
            await missing(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


async def _to_index(request: Request) -> Response:
    # Relative, so it holds under any mount prefix or proxy: /ui -> /ui/, /aml/ui -> /aml/ui/.
    return RedirectResponse("ui/")


def ui_routes(directory: Path = UI_DIR) -> list[BaseRoute]:
    return [Route("/ui", _to_index, include_in_schema=False), Mount("/ui", app=UiFiles(directory), name="ui")]
