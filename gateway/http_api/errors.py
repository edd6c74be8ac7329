"""Errors as the HTTP API answers them: JSON `{"error": {"type", "message", "status"}}`."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.http_api.schemas import ErrorBody
from gateway.job_queue import Busy
from tabagent.errors import NotReady, TabAgentError

log = logging.getLogger(__name__)

# The error responses every job route documents.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (401, "the API key is missing or wrong"), (404, "no such job"),
    )
}


def error(status: int, message: str, type_: str | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    """One error response; `type_` defaults to the status's phrase ("NotFound")."""
    name = type_ or HTTPStatus(status).phrase.replace(" ", "")
    return JSONResponse({"error": {"type": name, "message": message, "status": status}},
                        status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error the same way: TabAgentError with its own status, HTTP errors,
    validation errors as 422 BadConfig, and anything unexpected as 500 (logged, no trace)."""

    @app.exception_handler(TabAgentError)
    async def tabagent_error(_: Request, exc: TabAgentError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
        if isinstance(exc, NotReady):
            headers = {"Retry-After": "5"}
        return error(exc.http_status, exc.message, type(exc).__name__, headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error(422, problems, "BadConfig")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP %s %s failed unexpectedly", request.method, request.url.path)
        return error(500, f"the gateway failed unexpectedly ({type(exc).__name__}); the error is logged",
                     "InternalError")
