"""Map the service's error tree to HTTP answers in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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
        loc = ["body", *exc.field.split(".")]
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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LogAnalyzerError, _handle)
