"""Settings of the HTTP service (``MEMORY_SERVICE_*`` environment variables), separate from the tiers' config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, f"MEMORY_SERVICE_{name.upper()}")


class ServiceSettings(BaseSettings):
    """How the service authenticates, limits and reports; every field has a ``MEMORY_SERVICE_<NAME>`` variable."""

    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True, case_sensitive=False)

    auth: Literal["enabled", "disabled"] = Field(
        "enabled", validation_alias=_env("auth"), description="'disabled' only for local development (insecure)."
    )
    key_cache_ttl_seconds: float = Field(
        30.0,
        ge=0,
        validation_alias=_env("key_cache_ttl_seconds"),
        description="How long a key lookup is cached in-process; a revocation takes effect within this time.",
    )
    key_cache_max_entries: int = Field(10_000, ge=1, validation_alias=_env("key_cache_max_entries"))
    key_pepper: str | None = Field(
        None,
        validation_alias=_env("key_pepper"),
        description="Optional server secret: keys are then stored as HMAC-SHA256(pepper, key) instead of SHA-256.",
    )
    rate_limit_enabled: bool = Field(True, validation_alias=_env("rate_limit_enabled"))
    rate_limit_per_second: float = Field(
        50.0, gt=0, validation_alias=_env("rate_limit_per_second"), description="Token refill rate per API key."
    )
    rate_limit_burst: int = Field(
        100, ge=1, validation_alias=_env("rate_limit_burst"), description="Bucket size: requests allowed at once."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1, validation_alias=_env("max_body_bytes"), description="Larger request bodies get 413."
    )
    max_concurrent_requests: int = Field(
        0,
        ge=0,
        validation_alias=_env("max_concurrent_requests"),
        description="API requests served at once (others wait in line); 0 = pg_pool_max of the memory config.",
    )
    queue_timeout_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("queue_timeout_seconds"),
        description="How long a request may wait for a slot before it gets 503 (overloaded).",
    )
    metrics_require_admin: bool = Field(
        False, validation_alias=_env("metrics_require_admin"), description="Require an admin key for GET /metrics."
    )
    init_retry_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("init_retry_seconds"),
        description="When a backend is down at start-up, retry initialising every this many seconds.",
    )
    gc_freeze: bool = Field(
        True,
        validation_alias=_env("gc_freeze"),
        description="After start-up, move the objects alive then (modules, tokenizer tables, pools) out of the "
        "garbage collector's reach (gc.freeze), so collections during requests traverse only request objects.",
    )
    ready_timeout_seconds: float = Field(
        3.0, gt=0, validation_alias=_env("ready_timeout_seconds"), description="Deadline of one readiness check."
    )

    @classmethod
    def load(cls, **overrides: Any) -> ServiceSettings:
        """Settings from ``MEMORY_SERVICE_*`` variables, with ``overrides`` (field names) taking precedence."""
        values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        return cls(**values)

    @property
    def auth_enabled(self) -> bool:
        """Whether API keys are required."""
        return self.auth == "enabled"


__all__ = ["ServiceSettings"]
