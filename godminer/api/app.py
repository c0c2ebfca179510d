"""The ASGI application: validator routes at the root, the operator's FastAPI app mounted beside them.

The validator routes are plain Starlette (the offer path is latency-critical); the operator API
(`/api/`, `/metrics`, `/dashboard`) is FastAPI. Every error is JSON; nothing can crash the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from godminer.api.auth import HttpError

log = logging.getLogger(__name__)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HttpError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


async def _starlette_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


EXCEPTION_HANDLERS = {
    HttpError: _http_error, HTTPException: _starlette_error, RequestValidationError: _validation_error,
    Exception: _unexpected,
}


def create_app(
    routes: list[BaseRoute],
    operator_app: ASGIApp | None = None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
) -> Starlette:
    all_routes = list(routes)
    if operator_app is not None:
        all_routes.append(Mount("/", app=operator_app))
    # Paths match exactly: the validator does not follow redirects, so a path without its trailing
    # slash must fail plainly (404) rather than 307 to something that looks like success.
    app = Starlette(routes=all_routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.router.redirect_slashes = False
    return app
