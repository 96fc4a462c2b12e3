"""Fixtures shared by the tests that run CLI commands in-process: a clean environment, a fresh database."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog
from pg_helpers import fresh_database

ENV_NAMES = ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "SUPABASE_URL")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh user's environment: no MEMORY_* settings, no API keys; logging restored after main()."""
    for name in list(os.environ):
        if name.upper().startswith("MEMORY_") or name.upper() in ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def fresh_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A new, empty database on the test server."""
    async with fresh_database(pg_dsn) as dsn:
        yield dsn
