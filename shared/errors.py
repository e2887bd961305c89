"""Errors that use cases raise; the API turns them into problem+json answers."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Invalid(DomainError):
    """Values that have the right shape but the wrong meaning; ``errors`` names the fields."""

    status = 422

    def __init__(
        self, errors: dict[str, list[str]], detail: str = "The request contains invalid fields."
    ) -> None:
        super().__init__(detail, errors=errors)


class Gone(DomainError):
    status = 410
