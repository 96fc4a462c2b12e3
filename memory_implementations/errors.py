"""Typed errors raised by memory_implementations; each names the offending field."""

from __future__ import annotations

import builtins


class MemoryError(builtins.Exception):
    """Base class of every error this package raises."""

    code: str = "memory_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        """Create the error; ``field`` names the offending key when there is one."""
        super().__init__(message)
        self.field = field
        self.message = message


class ConfigError(MemoryError):
    """A configuration key has a bad value or does not exist."""

    code = "config_error"


class ValidationError(MemoryError):
    """An item passed to a memory is malformed; nothing was written."""

    code = "validation_error"


class BackendUnavailable(MemoryError):
    """Redis or PostgreSQL could not be reached or answered with an error."""

    code = "backend_unavailable"


class ProviderError(MemoryError):
    """An embedding or LLM provider refused or failed a request."""

    code = "provider_error"

    def __init__(
        self, message: str, *, field: str | None = None, status: int | None = None, retryable: bool = False
    ) -> None:
        """Create the error with the HTTP ``status`` and whether retrying may help."""
        super().__init__(message, field=field)
        self.status = status
        self.retryable = retryable


class SchemaMismatch(ConfigError):
    """The database schema does not match the configuration (e.g. embedding dimension)."""

    code = "schema_mismatch"


class NotFound(MemoryError):
    """The requested record does not exist (or belongs to another tenant)."""

    code = "not_found"


__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "MemoryError",
    "NotFound",
    "ProviderError",
    "SchemaMismatch",
    "ValidationError",
]


class ExtensionMissing(BackendUnavailable):
    """A required PostgreSQL extension (pgvector's ``vector``) is not installed on the server."""

    code = "extension_missing"


class Conflict(ValidationError):
    """The change conflicts with existing data (e.g. it would duplicate another record)."""

    code = "conflict"


__all__ += ["Conflict", "ExtensionMissing"]
