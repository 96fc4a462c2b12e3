"""Connections shared by all tiers: Redis, PostgreSQL + pgvector, migrations, key layout."""

from .keys import KeyBuilder
from .migrations import MigrationReport, migrate
from .stores import Stores

__all__ = ["KeyBuilder", "MigrationReport", "Stores", "migrate"]
