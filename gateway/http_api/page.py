"""The web page: `/`, its static files, the browser libraries it uses, and Swagger UI at `/docs`.

The libraries come from the npm registry (web/package-lock.json pins them; scripts/install.sh
installs them into web/node_modules, never committed) and are served from here, so neither
the page nor `/docs` loads anything from a CDN:

    /vendor/alphatab/...     @coderline/alphatab's dist/ (script, fonts, sonivox.sf2)
    /vendor/swagger-ui/...   swagger-ui-dist
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# The repository's web/node_modules (a source checkout; images set TABAGENT_WEB_DIR).
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "web" / "node_modules"
VENDOR = {"alphatab": "@coderline/alphatab/dist", "swagger-ui": "swagger-ui-dist"}
MISSING = ("<!doctype html><title>Tab Agent API</title><h1>Tab Agent API</h1><p>Swagger UI is not "
           "installed on this gateway (scripts/install.sh puts it in web/node_modules). The API "
           "description is at <a href=\"{openapi}\">{openapi}</a>.</p>")


def web_dir() -> Path:
    """Where the npm packages are: TABAGENT_WEB_DIR, else the repository's web/node_modules."""
    return Path(os.environ.get("TABAGENT_WEB_DIR") or DEFAULT_WEB_DIR)


def vendor_paths(root: Path | None = None) -> dict[str, Path]:
    """Each browser library's folder (present or not)."""
    root = root or web_dir()
    return {name: root / sub for name, sub in VENDOR.items()}


def mount(app: FastAPI, root: Path | None = None, auth_required: bool = False) -> dict[str, bool]:
    """Serve the page at `/`, its files under `/static`, the libraries under `/vendor`,
    the favicon, and Swagger UI at `/docs` (the app must be built with `docs_url=None`).

    Args:
        app: the FastAPI app.
        root: the folder holding the npm packages (default: `web_dir()`).
        auth_required: the gateway has an API key; the page then asks for it before it
            sends any API request (no 401s in the console).

    Returns:
        Library name -> whether it is installed (and served).
    """
    router = APIRouter()
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace(
        "{{AUTH}}", "required" if auth_required else "none")
    found = {}
    for name, path in vendor_paths(root).items():
        found[name] = path.is_dir()
        if found[name]:
            app.mount(f"/vendor/{name}", StaticFiles(directory=path), name=f"vendor-{name}")
        else:
            log.warning("%s is not installed (%s missing): run scripts/install.sh; %s", name, path,
                        "the page has no tab player" if name == "alphatab" else "/docs shows a plain page")

    @router.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @router.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @router.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        openapi = app.openapi_url or "/openapi.json"
        if not found["swagger-ui"]:
            return HTMLResponse(MISSING.format(openapi=openapi))
        return get_swagger_ui_html(
            openapi_url=openapi, title=f"{app.title} - API",
            swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return found
