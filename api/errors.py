"""Map the service's error tree to HTTP answers in one place."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shared.errors import (
    AuthenticationError,
    ForbiddenError,
    InvalidQueryError,
    LogAnalyzerError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
)

# HTTP status and extra headers of the errors the service raises on purpose, by class; a
# subclass answers like its nearest listed ancestor, anything else is a 500.
_STATUS: dict[type[LogAnalyzerError], int] = {
    AuthenticationError: 401,
    NotFoundError: 404,
    RateLimitedError: 429,
    ServiceUnavailableError: 503,
}
_HEADERS: dict[type[LogAnalyzerError], Callable[[Any], dict[str, str]]] = {
    AuthenticationError: lambda _exc: {"WWW-Authenticate": "Bearer"},
    RateLimitedError: lambda exc: {"Retry-After": str(exc.retry_after)},
    ServiceUnavailableError: lambda _exc: {"Retry-After": "5"},
}

T = TypeVar("T")


def by_class(table: Mapping[type[LogAnalyzerError], T], exc: LogAnalyzerError) -> T | None:
    """The entry for the nearest class of `exc` (its own first) that `table` lists."""
    return next((table[cls] for cls in type(exc).__mro__ if cls in table), None)


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LogAnalyzerError)
    headers = by_class(_HEADERS, exc)
    return JSONResponse(
        {"detail": exc.message, "code": exc.code},
        status_code=by_class(_STATUS, exc) or 500,
        headers=headers(exc) if headers else None,
    )


async def _forbidden(request: Request, exc: Exception) -> JSONResponse:
    # Like a 422, `loc` names the field the key may not ask for.
    assert isinstance(exc, ForbiddenError)
    loc = [exc.location, *exc.field.split(".")]
    detail = [{"loc": loc, "msg": exc.message, "type": exc.code}]
    return JSONResponse({"detail": detail, "code": exc.code}, status_code=403)


async def _invalid_field(request: Request, exc: Exception) -> JSONResponse:
    # The same shape as FastAPI's own 422: `loc` names the field, one entry per problem.
    assert isinstance(exc, InvalidQueryError)
    detail = [
        {"loc": [p.location, *p.field.split(".")], "msg": p.message, "type": "value_error"}
        for p in exc.problems
    ]
    return JSONResponse({"detail": detail}, status_code=422)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: survives lone surrogates sent by a client."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default handler echoes the input back, which fails to encode a lone
    # surrogate (a 500) and repeats request data; location, message and type are enough.
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return AsciiJSONResponse({"detail": detail}, status_code=422)


class ErrorBody(BaseModel):
    """The body of every error the service answers on purpose."""

    detail: str
    code: str | None = None  # absent only on FastAPI's own 400 for an undecodable body


class ValidationErrorBody(BaseModel):
    detail: list[dict[str, Any]]


class ForbiddenBody(BaseModel):
    detail: list[dict[str, Any]]
    code: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON or UTF-8."},
    401: {"model": ErrorBody, "description": "A valid API key is required."},
    403: {"model": ForbiddenBody, "description": "Outside the key's scope; `loc` names the field."},
    404: {"model": ErrorBody, "description": "No such job, it expired, or another key's job."},
    413: {"model": ErrorBody, "description": "Request body larger than MAX_BODY_BYTES."},
    422: {"model": ValidationErrorBody, "description": "A field is invalid; `loc` names it."},
    429: {"model": ErrorBody, "description": "Over a per-key limit; see Retry-After."},
    503: {"model": ErrorBody, "description": "Redis or the queue is unavailable; retry."},
}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LogAnalyzerError, _handle)
    app.add_exception_handler(InvalidQueryError, _invalid_field)
    app.add_exception_handler(ForbiddenError, _forbidden)
    app.add_exception_handler(RequestValidationError, _invalid_request)
