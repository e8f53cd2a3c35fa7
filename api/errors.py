"""Map the service's error tree to HTTP answers in one place."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shared.errors import (
    AuthenticationError,
    InvalidQueryError,
    JobNotFoundError,
    LogAnalyzerError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
)


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LogAnalyzerError)
    if isinstance(exc, InvalidQueryError):
        loc = [exc.location, *exc.field.split(".")]
        detail = [{"loc": loc, "msg": exc.message, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)
    if isinstance(exc, AuthenticationError):
        return JSONResponse(
            {"detail": exc.message, "code": exc.code},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if isinstance(exc, RateLimitedError):
        return JSONResponse(
            {"detail": exc.message, "code": exc.code},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, PayloadTooLargeError):
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=413)
    if isinstance(exc, JobNotFoundError):
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=404)
    if isinstance(exc, ServiceUnavailableError):
        return JSONResponse(
            {"detail": exc.message, "code": exc.code}, status_code=503, headers={"Retry-After": "5"}
        )
    return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=500)


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON or UTF-8."},
    401: {"model": ErrorBody, "description": "A valid API key is required."},
    404: {"model": ErrorBody, "description": "No such job (or it expired)."},
    413: {"model": ErrorBody, "description": "Request body larger than MAX_BODY_BYTES."},
    422: {"model": ValidationErrorBody, "description": "A field is invalid; `loc` names it."},
    429: {"model": ErrorBody, "description": "Over a per-key limit; see Retry-After."},
    503: {"model": ErrorBody, "description": "Redis or the queue is unavailable; retry."},
}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LogAnalyzerError, _handle)
    app.add_exception_handler(RequestValidationError, _invalid_request)
