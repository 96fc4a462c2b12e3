"""The HTTP service: ``create_app(config)`` builds the FastAPI app (imported lazily: FastAPI loads on first use)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """Import ``create_app`` on first access, so ``service.usage`` stays importable without FastAPI."""
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
