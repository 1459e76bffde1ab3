"""The one error type of the HTTP service: a status, a code and a message, sent as JSON."""

from __future__ import annotations


class ApiError(Exception):
    """Becomes ``{"error": code, "message": message, ...extra}`` with HTTP ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict:
        return {"error": self.code, "message": self.message, **self.extra}
