"""One error hierarchy, rendered as ``{"error": ClassName, "detail": message}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class ParleyError(Exception):
    status_code = 500

    def __init__(self, message: str, status_code: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "detail": self.message}


class BadRequest(ParleyError):
    status_code = 400


class Unauthorized(ParleyError):
    status_code = 401

    def __init__(self, message: str = "Authentication required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ParleyError):
    status_code = 403


class NotFound(ParleyError):
    status_code = 404


class Conflict(ParleyError):
    status_code = 409


class PayloadTooLarge(ParleyError):
    status_code = 413


class UnprocessableEntity(ParleyError):
    status_code = 422


class TooManyRequests(ParleyError):
    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ServiceBusy(ParleyError):
    status_code = 503

    def __init__(self, message: str = "Parley is busy; retry shortly", retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


async def _handle_parley_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ParleyError):  # pragma: no cover - registered for ParleyError only
        raise exc
    return JSONResponse(exc.payload(), status_code=exc.status_code, headers=exc.headers)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ParleyError, _handle_parley_error)
