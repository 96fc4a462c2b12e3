"""Typed configuration: the seed's plain dict, ``MEMORY_*`` environment variables, or a TOML file.

Precedence, highest first: values passed in code (the dict) > environment variables > the TOML
file named by ``config_file=`` or ``MEMORY_CONFIG_FILE`` > built-in defaults.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .config_env import check_env_names
from .errors import ConfigError
from .types import MemoryType

PRIORITY_KEYS = ("recent_conversation", "summary", "entities", "vector_search", "working_memory", "key_value")
DEFAULT_PRIORITY = {
    "recent_conversation": 0.35,
    "summary": 0.2,
    "entities": 0.15,
    "vector_search": 0.15,
    "working_memory": 0.1,
    "key_value": 0.05,
}
DEFAULT_ENTITY_TYPES = ["person", "organization", "location", "concept"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "memory_implementations")


def _env(name: str, *extra: str) -> AliasChoices:
    """Accept the field name, ``MEMORY_<NAME>`` and any conventional variable names."""
    return AliasChoices(name, f"MEMORY_{name.upper()}", *extra)


class MemoryConfig(BaseSettings):
    """Every setting of every tier and of the orchestrator, typed and validated."""

    model_config = SettingsConfigDict(
        extra="forbid", populate_by_name=True, case_sensitive=False, validate_default=True, frozen=False
    )

    # connections
    redis_url: SecretStr | None = Field(None, validation_alias=_env("redis_url", "REDIS_URL"))
    database_url: SecretStr | None = Field(None, validation_alias=_env("database_url", "DATABASE_URL"))
    supabase_url: str | None = Field(None, validation_alias=_env("supabase_url", "SUPABASE_URL"))
    supabase_key: SecretStr | None = Field(None, validation_alias=_env("supabase_key", "SUPABASE_KEY"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("openai_api_key", "OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("openai_base_url", "OPENAI_BASE_URL"))
    google_api_key: SecretStr | None = Field(
        None, validation_alias=_env("google_api_key", "GOOGLE_API_KEY", "GEMINI_API_KEY")
    )
    google_base_url: str | None = Field(None, validation_alias=_env("google_base_url"))
    data_dir: str = Field(default_factory=_default_data_dir, validation_alias=_env("data_dir"))
    pg_pool_min: int = Field(1, ge=0, validation_alias=_env("pg_pool_min"))
    pg_pool_max: int = Field(10, ge=1, validation_alias=_env("pg_pool_max"))
    pg_transaction_pooler: bool = Field(False, validation_alias=_env("pg_transaction_pooler"))
    redis_max_connections: int = Field(64, ge=1, validation_alias=_env("redis_max_connections"))
    key_prefix: str = Field("mi", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", validation_alias=_env("key_prefix"))
    auto_migrate: bool = Field(True, validation_alias=_env("auto_migrate"))
    durability: Literal["postgres", "redis"] = Field("postgres", validation_alias=_env("durability"))

    # conversation buffer
    window_size: int = Field(10, ge=1, validation_alias=_env("window_size"))
    window_type: Literal["turns", "tokens", "time"] = Field("turns", validation_alias=_env("window_type"))
    ttl_seconds: int = Field(3600, ge=0, validation_alias=_env("ttl_seconds"))
    max_message_chars: int = Field(32_000, ge=1, validation_alias=_env("max_message_chars"))
    tokenizer_model: str = Field("gpt-4o", validation_alias=_env("tokenizer_model"))

    # summary
    buffer_window_size: int = Field(10, ge=1, validation_alias=_env("buffer_window_size"))
    summary_context_weight: float = Field(0.3, ge=0.0, le=1.0, validation_alias=_env("summary_context_weight"))
    max_total_tokens: int = Field(4000, ge=1, validation_alias=_env("max_total_tokens"))
    summarization_model: str | None = Field(None, validation_alias=_env("summarization_model"))
    summary_batch_size: int = Field(4, ge=1, le=1000, validation_alias=_env("summary_batch_size"))
    llm_provider: Literal["auto", "openai", "gemini", "offline"] = Field("auto", validation_alias=_env("llm_provider"))

    # vector
    similarity_threshold: float | None = Field(None, ge=-1.0, le=1.0, validation_alias=_env("similarity_threshold"))
    max_results: int | None = Field(None, ge=1, le=1000, validation_alias=_env("max_results"))
    embedding_model: str | None = Field(None, validation_alias=_env("embedding_model"))
    embedding_provider: Literal["auto", "openai", "gemini", "local", "lexical"] = Field(
        "auto", validation_alias=_env("embedding_provider")
    )
    embedding_dim: int | None = Field(None, ge=1, le=16000, validation_alias=_env("embedding_dim"))
    embedding_batch_size: int = Field(64, ge=1, le=2048, validation_alias=_env("embedding_batch_size"))
    hybrid_search: bool = Field(True, validation_alias=_env("hybrid_search"))
    mmr_lambda: float | None = Field(None, ge=0.0, le=1.0, validation_alias=_env("mmr_lambda"))
    provider_requests_per_second: float = Field(20.0, gt=0, validation_alias=_env("provider_requests_per_second"))
    provider_max_retries: int = Field(4, ge=0, le=20, validation_alias=_env("provider_max_retries"))
    provider_timeout_seconds: float = Field(30.0, gt=0, validation_alias=_env("provider_timeout_seconds"))

    # working memory
    capacity_limit: int = Field(100, ge=1, validation_alias=_env("capacity_limit"))
    eviction_policy: Literal["importance", "lru", "fifo"] = Field(
        "importance", validation_alias=_env("eviction_policy")
    )
    enable_reasoning_chain: bool = Field(True, validation_alias=_env("enable_reasoning_chain"))

    # key-value
    namespace: str = Field("default", min_length=1, validation_alias=_env("namespace"))
    serialize_json: bool = Field(True, validation_alias=_env("serialize_json"))
    compression_threshold: int = Field(1024, ge=0, validation_alias=_env("compression_threshold"))

    # entity
    entity_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ENTITY_TYPES), validation_alias=_env("entity_types")
    )
    relationship_tracking: bool = Field(True, validation_alias=_env("relationship_tracking"))
    entity_half_life_days: float = Field(14.0, gt=0, validation_alias=_env("entity_half_life_days"))

    # orchestrator
    enabled_memories: list[MemoryType] = Field(
        default_factory=lambda: [
            MemoryType.CONVERSATION_SUMMARY,
            MemoryType.VECTOR_DATABASE,
            MemoryType.ENTITY_MEMORY,
            MemoryType.WORKING_MEMORY,
            MemoryType.KEY_VALUE_STORE,
        ],
        validation_alias=_env("enabled_memories"),
    )
    required_memories: list[MemoryType] | None = Field(None, validation_alias=_env("required_memories"))
    parallel_queries: bool = Field(True, validation_alias=_env("parallel_queries"))
    cross_memory_links: bool = Field(True, validation_alias=_env("cross_memory_links"))
    default_context_priority: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY), validation_alias=_env("default_context_priority")
    )
    tier_timeout_ms: float = Field(250.0, gt=0, validation_alias=_env("tier_timeout_ms"))
    # load the embedding model, the tokenizer and one read per tier in initialize(), so the first turn
    # meets tier_timeout_ms (MemoryOrchestrator.warm_up)
    warm_up: bool = Field(True, validation_alias=_env("warm_up"))
    background_concurrency: int = Field(4, ge=1, le=256, validation_alias=_env("background_concurrency"))
    # on initialize(), embed in the background the recent messages a previous process stored but never
    # embedded (it exited without close()); see memory_implementations.catch_up
    reindex_on_start: bool = Field(True, validation_alias=_env("reindex_on_start"))
    # Threshold of the ``memory_implementations`` logger, applied by every tier (hence the orchestrator)
    # only when set explicitly (code, MEMORY_LOG_LEVEL or the config file); left at its default the
    # application's logging configuration alone decides. See memory_implementations.logging.
    log_level: str = Field("INFO", validation_alias=_env("log_level"))

    config_file: str | None = Field(None, validation_alias=_env("config_file"), exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Code > environment > TOML file > defaults."""
        if isinstance(env_settings, EnvSettingsSource):
            # Only MEMORY_* and the conventional names (REDIS_URL, ...): with populate_by_name the env
            # source would also read bare field names (LOG_LEVEL, NAMESPACE, DATA_DIR ...), and the
            # bare `redis_url` alias would shadow MEMORY_REDIS_URL.
            # A MEMORY_* variable that is none of ours: a near-miss raises, others are logged (config_env.py).
            check_env_names(env_settings.env_vars, settings_cls.model_fields)
            env_settings.env_vars = _our_env_vars(settings_cls, env_settings.env_vars)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path(init_settings)
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("entity_types")
    @classmethod
    def _entity_types(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip().lower() for v in value if v and v.strip()]
        if not cleaned:
            raise ValueError("needs at least one entity type")
        return cleaned

    @field_validator("default_context_priority")
    @classmethod
    def _priorities(cls, value: dict[str, float]) -> dict[str, float]:
        for key, weight in value.items():
            if key not in PRIORITY_KEYS:
                raise ValueError(
                    f"unknown section {key!r}{_suggest(key, PRIORITY_KEYS)}; allowed: {', '.join(PRIORITY_KEYS)}"
                )
            if weight < 0:
                raise ValueError(f"weight of {key!r} must be >= 0")
        if not any(w > 0 for w in value.values()):
            raise ValueError("at least one weight must be > 0")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; allowed: {', '.join(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _dims(self) -> MemoryConfig:
        if self.pg_pool_min > self.pg_pool_max:
            raise ValueError("pg_pool_min must be <= pg_pool_max")
        return self

    @classmethod
    def from_any(cls, config: Mapping[str, Any] | MemoryConfig | None = None, **overrides: Any) -> MemoryConfig:
        """Build a config from the seed's dict (or return a copy of a config); raise ConfigError on bad input."""
        if isinstance(config, MemoryConfig):
            return config.model_copy(update=overrides) if overrides else config
        data: dict[str, Any] = dict(config or {})
        data.update(overrides)
        valid = set(cls.model_fields)
        for key in data:
            if key not in valid:
                raise ConfigError(f"unknown config key {key!r}{_suggest(key, valid)}", field=key)
        try:
            return cls(**data)
        except PydanticValidationError as exc:
            raise _to_config_error(exc) from None

    def secret(self, name: str) -> str | None:
        """Return a secret field's plain value (never logged)."""
        value = getattr(self, name)
        if value is None:
            return None
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    def public_dict(self) -> dict[str, Any]:
        """Return the settings with secrets masked, for logs and diagnostics."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "**********" if value.get_secret_value() else None
            elif isinstance(value, list):
                out[name] = [v.value if isinstance(v, MemoryType) else v for v in value]
            else:
                out[name] = value
        return out


def _our_env_vars(settings_cls: type[BaseSettings], env_vars: Mapping[str, str | None]) -> dict[str, str | None]:
    """The environment variables the settings read: MEMORY_<NAME>, else a conventional name (REDIS_URL ...)."""
    env = {k.lower(): v for k, v in env_vars.items()}
    out: dict[str, str | None] = {}
    for name, info in settings_cls.model_fields.items():
        alias = info.validation_alias
        choices = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
        prefixed = f"memory_{name}"
        if prefixed in env:
            out[prefixed] = env[prefixed]
            continue
        for extra in (c.lower() for c in choices if c != name and c.lower() != prefixed):
            if extra in env:
                out[extra] = env[extra]
                break
    return out


def _toml_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    explicit = None
    try:
        explicit = init_settings().get("config_file")
    except Exception:  # pragma: no cover - defensive: sources are plain dicts here
        explicit = None
    path = explicit or os.environ.get("MEMORY_CONFIG_FILE")
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config_file {str(p)!r} does not exist", field="config_file")
    return p


def _suggest(key: str, valid: Any) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _to_config_error(exc: PydanticValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = err.get("loc") or ("config",)
    key = str(loc[0])
    if err.get("type") == "extra_forbidden":
        return ConfigError(f"unknown config key {key!r}{_suggest(key, MemoryConfig.model_fields)}", field=key)
    detail = err.get("msg", "invalid value")
    allowed = ""
    ctx = err.get("ctx") or {}
    if "expected" in ctx and str(ctx["expected"]) not in detail:
        allowed = f"; allowed: {ctx['expected']}"
    got = err.get("input")
    shown = "<secret>" if "key" in key or "url" in key else repr(got)
    return ConfigError(f"config key {key!r} is invalid: {detail}{allowed} (got {shown})", field=key)


__all__ = ["DEFAULT_PRIORITY", "LOG_LEVELS", "PRIORITY_KEYS", "MemoryConfig"]
