"""MemoryConfig: the seed's dicts, validation messages, precedence, documented defaults, secret hygiene."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from memory_implementations import config_env
from memory_implementations.config import DEFAULT_PRIORITY, MemoryConfig
from memory_implementations.config_env import check_env_names
from memory_implementations.errors import ConfigError
from memory_implementations.logging import configure_logging
from memory_implementations.service.settings import ServiceSettings
from memory_implementations.types import MemoryType

ROOT = Path(__file__).resolve().parent.parent
CONVENTIONAL = (
    "REDIS_URL",
    "DATABASE_URL",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No configuration leaks in from the machine's environment."""
    for name in list(os.environ):
        if name.upper().startswith("MEMORY_") or name.upper() in CONVENTIONAL:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put structlog and the root logger back after a test reconfigures them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


# --- the seed README's dicts, exactly as written there -----------------------------------------

SEED_CONFIGS: dict[str, dict[str, Any]] = {
    "conversation_buffer": {
        "redis_url": "redis://localhost:6379",
        "supabase_url": "YOUR_SUPABASE_URL",
        "supabase_key": "YOUR_SUPABASE_KEY",
        "window_size": 10,
        "window_type": "turns",
        "ttl_seconds": 3600,
    },
    "conversation_summary": {
        "redis_url": "redis://localhost:6379",
        "supabase_url": "YOUR_SUPABASE_URL",
        "supabase_key": "YOUR_SUPABASE_KEY",
        "google_api_key": "YOUR_GOOGLE_API_KEY",
        "buffer_window_size": 10,
        "summary_context_weight": 0.3,
        "max_total_tokens": 4000,
    },
    "vector_database": {
        "supabase_url": "YOUR_SUPABASE_URL",
        "supabase_key": "YOUR_SUPABASE_KEY",
        "openai_api_key": "YOUR_OPENAI_API_KEY",
        "embedding_model": "text-embedding-3-small",
        "similarity_threshold": 0.7,
    },
    "working_memory": {
        "redis_url": "redis://localhost:6379",
        "ttl_seconds": 1800,
        "capacity_limit": 100,
        "eviction_policy": "importance",
        "enable_reasoning_chain": True,
    },
    "key_value_store": {
        "redis_url": "redis://localhost:6379",
        "supabase_url": "YOUR_SUPABASE_URL",
        "supabase_key": "YOUR_SUPABASE_KEY",
        "namespace": "user_context",
        "serialize_json": True,
    },
    "entity_memory": {
        "supabase_url": "YOUR_SUPABASE_URL",
        "supabase_key": "YOUR_SUPABASE_KEY",
        "openai_api_key": "YOUR_OPENAI_API_KEY",
        "entity_types": ["person", "organization", "location", "concept"],
        "relationship_tracking": True,
    },
    "orchestrator": {
        "enabled_memories": [
            MemoryType.CONVERSATION_SUMMARY,
            MemoryType.VECTOR_DATABASE,
            MemoryType.ENTITY_MEMORY,
            MemoryType.WORKING_MEMORY,
        ],
        # Include configs for each enabled memory type
        "redis_url": "redis://localhost:6379",
        "supabase_url": "YOUR_SUPABASE_URL",
        # ... other configs
    },
    "quick_start": {
        "redis_url": "redis://localhost:6379",
        "supabase_url": "YOUR_SUPABASE_URL",
        "supabase_key": "YOUR_SUPABASE_KEY",
        "google_api_key": "YOUR_GOOGLE_API_KEY",
    },
    "essential": {
        # Database connections
        "redis_url": "redis://localhost:6379",
        "supabase_url": "https://your-project.supabase.co",
        "supabase_key": "your-service-role-key",
        # AI API keys
        "openai_api_key": "sk-your-openai-key",
        "google_api_key": "your-google-ai-key",
    },
    "advanced": {
        # Core connections
        "redis_url": "redis://localhost:6379",
        "supabase_url": "https://your-project.supabase.co",
        "supabase_key": "your-service-role-key",
        "openai_api_key": "sk-your-openai-key",
        "google_api_key": "your-google-ai-key",
        # Memory-specific settings
        "window_size": 10,
        "window_type": "turns",  # 'turns', 'tokens', 'time'
        "ttl_seconds": 3600,
        "similarity_threshold": 0.7,
        "max_results": 5,
        "embedding_model": "text-embedding-3-small",
        "summarization_model": "gemini-2.0-flash-exp",
        # Orchestrator settings
        "enabled_memories": [
            MemoryType.CONVERSATION_SUMMARY,
            MemoryType.VECTOR_DATABASE,
            MemoryType.ENTITY_MEMORY,
            MemoryType.WORKING_MEMORY,
            MemoryType.KEY_VALUE_STORE,
        ],
        "parallel_queries": True,
        "cross_memory_links": True,
        "default_context_priority": {
            "recent_conversation": 0.4,
            "summary": 0.2,
            "entities": 0.15,
            "vector_search": 0.15,
            "working_memory": 0.1,
        },
    },
}


@pytest.mark.parametrize("name", sorted(SEED_CONFIGS))
def test_seed_configs_are_accepted(name: str) -> None:
    seed = SEED_CONFIGS[name]
    cfg = MemoryConfig.from_any(seed)
    for key, value in seed.items():
        got = getattr(cfg, key)
        if key in {"redis_url", "supabase_key", "openai_api_key", "google_api_key"}:
            assert cfg.secret(key) == value
        elif key == "enabled_memories":
            assert got == value and all(isinstance(m, MemoryType) for m in got)
        else:
            assert got == value, key


def test_enabled_memories_accept_plain_strings_too() -> None:
    cfg = MemoryConfig.from_any({"enabled_memories": ["vector_database", MemoryType.ENTITY_MEMORY]})
    assert cfg.enabled_memories == [MemoryType.VECTOR_DATABASE, MemoryType.ENTITY_MEMORY]


def test_from_any_returns_a_config_unchanged_or_updated() -> None:
    cfg = MemoryConfig.from_any({"window_size": 4})
    assert MemoryConfig.from_any(cfg) is cfg
    assert MemoryConfig.from_any(cfg, window_size=6).window_size == 6
    assert MemoryConfig.from_any(None).window_size == 10


# --- validation messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("window_type", "weeks", ["'turns'", "'tokens'", "'time'"]),
        ("eviction_policy", "random", ["'importance'", "'lru'", "'fifo'"]),
        ("durability", "disk", ["'postgres'", "'redis'"]),
        ("llm_provider", "claude", ["'auto'", "'openai'", "'gemini'", "'offline'"]),
        ("embedding_provider", "cohere", ["'openai'", "'gemini'", "'local'", "'lexical'"]),
        ("enabled_memories", ["conversation_buffer", "long_term"], ["'conversation_buffer'", "'entity_memory'"]),
        ("default_context_priority", {"recent": 1.0}, ["recent_conversation", "key_value"]),
        ("window_size", 0, ["greater than or equal to 1"]),
        ("similarity_threshold", 1.5, ["less than or equal to 1"]),
        ("max_results", "many", ["valid integer"]),
    ],
)
def test_bad_values_name_the_key_and_allowed_values(key: str, value: Any, allowed: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        MemoryConfig.from_any({key: value})
    assert info.value.field == key
    message = str(info.value)
    assert repr(key) in message
    for fragment in allowed:
        assert fragment in message


def test_unknown_priority_section_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'recent_conversation'"):
        MemoryConfig.from_any({"default_context_priority": {"recent_conversaton": 1.0}})


@pytest.mark.parametrize(
    ("typo", "expected"),
    [("windw_size", "window_size"), ("similarity_treshold", "similarity_threshold"), ("redis_ulr", "redis_url")],
)
def test_unknown_key_names_the_closest_valid_key(typo: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        MemoryConfig.from_any({typo: 1})
    assert info.value.field == typo
    assert f"did you mean {expected!r}" in str(info.value)


def test_unknown_key_without_a_close_match_is_still_named() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'zzz'") as info:
        MemoryConfig.from_any({"zzz": 1})
    assert "did you mean" not in str(info.value)


def test_pool_bounds_are_checked_together() -> None:
    with pytest.raises(ConfigError, match="pg_pool_min must be <= pg_pool_max"):
        MemoryConfig.from_any({"pg_pool_min": 5, "pg_pool_max": 2})


# --- precedence: code > env > TOML > defaults ----------------------------------------------------


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "memory.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'window_size = 5\nnamespace = "from-toml"\n')
    cfg = MemoryConfig.from_any({"config_file": str(path)})
    assert (cfg.window_size, cfg.namespace, cfg.max_results) == (5, "from-toml", None)


def test_env_overrides_toml_and_code_overrides_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, 'window_size = 5\nnamespace = "from-toml"\nmax_results = 9\n')
    monkeypatch.setenv("MEMORY_WINDOW_SIZE", "7")
    monkeypatch.setenv("MEMORY_NAMESPACE", "from-env")
    cfg = MemoryConfig.from_any({"config_file": str(path), "namespace": "from-code"})
    assert cfg.window_size == 7  # env beats TOML
    assert cfg.namespace == "from-code"  # code beats env
    assert cfg.max_results == 9  # TOML beats defaults


def test_memory_config_file_env_names_the_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write_toml(tmp_path, "window_size = 11\n")
    code_file = tmp_path / "code.toml"
    code_file.write_text("window_size = 12\n", encoding="utf-8")
    monkeypatch.setenv("MEMORY_CONFIG_FILE", str(env_file))
    assert MemoryConfig.from_any({}).window_size == 11
    assert MemoryConfig.from_any({"config_file": str(code_file)}).window_size == 12


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        MemoryConfig.from_any({"config_file": str(tmp_path / "absent.toml")})
    assert info.value.field == "config_file"


def test_toml_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'window_size'"):
        MemoryConfig.from_any({"config_file": str(write_toml(tmp_path, "windw_size = 3\n"))})
    with pytest.raises(ConfigError) as info:
        MemoryConfig.from_any({"config_file": str(write_toml(tmp_path, 'eviction_policy = "oldest"\n'))})
    assert info.value.field == "eviction_policy" and "'lru'" in str(info.value)


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ("OPENAI_API_KEY", "openai_api_key", "sk-conventional"),
        ("REDIS_URL", "redis_url", "redis://cache:6379/1"),
        ("DATABASE_URL", "database_url", "postgresql://u:p@db:5432/app"),
        ("GOOGLE_API_KEY", "google_api_key", "g-conventional"),
        ("GEMINI_API_KEY", "google_api_key", "g-gemini"),
        ("SUPABASE_URL", "supabase_url", "https://p.supabase.co"),
    ],
)
def test_conventional_env_vars(monkeypatch: pytest.MonkeyPatch, env: str, field: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    cfg = MemoryConfig.from_any({})
    assert cfg.secret(field) == value
    # code still wins
    assert MemoryConfig.from_any({field: "from-code"}).secret(field) == "from-code"


def test_memory_prefixed_env_beats_the_conventional_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://conventional:6379/0")
    monkeypatch.setenv("MEMORY_REDIS_URL", "redis://prefixed:6379/0")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-conventional")
    monkeypatch.setenv("MEMORY_OPENAI_API_KEY", "sk-prefixed")
    cfg = MemoryConfig.from_any({})
    assert cfg.secret("redis_url") == "redis://prefixed:6379/0"
    assert cfg.secret("openai_api_key") == "sk-prefixed"


def test_conventional_env_beats_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, 'redis_url = "redis://toml:6379/0"\n')
    assert MemoryConfig.from_any({"config_file": str(path)}).secret("redis_url") == "redis://toml:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://env:6379/0")
    assert MemoryConfig.from_any({"config_file": str(path)}).secret("redis_url") == "redis://env:6379/0"


def test_bare_field_names_in_the_environment_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # generic variables such as LOG_LEVEL or NAMESPACE belong to other programs
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("NAMESPACE", "kube-system")
    monkeypatch.setenv("WINDOW_SIZE", "99")
    cfg = MemoryConfig.from_any({})
    assert (cfg.log_level, cfg.namespace, cfg.window_size) == ("INFO", "default", 10)


def test_env_values_are_parsed_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_ENABLED_MEMORIES", '["vector_database", "entity_memory"]')
    monkeypatch.setenv("MEMORY_DEFAULT_CONTEXT_PRIORITY", '{"summary": 1.0}')
    monkeypatch.setenv("memory_hybrid_search", "true")  # case-insensitive
    cfg = MemoryConfig.from_any({})
    assert cfg.enabled_memories == [MemoryType.VECTOR_DATABASE, MemoryType.ENTITY_MEMORY]
    assert cfg.default_context_priority == {"summary": 1.0}
    assert cfg.hybrid_search is True
    monkeypatch.setenv("MEMORY_WINDOW_TYPE", "fortnights")
    with pytest.raises(ConfigError) as info:
        MemoryConfig.from_any({})
    assert info.value.field == "window_type" and "'turns'" in str(info.value)


# --- unknown MEMORY_* variables: a near-miss is an error, anything else a warning ---------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-process warnings afresh."""
    monkeypatch.setattr(config_env, "_warned", set())


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("MEMORY_WINDOW_SIZ", "MEMORY_WINDOW_SIZE"),
        ("MEMORY_EMBEDING_MODEL", "MEMORY_EMBEDDING_MODEL"),
        ("MEMORY_OPENAI_KEY", "MEMORY_OPENAI_API_KEY"),
        ("memory_log_levl", "MEMORY_LOG_LEVEL"),
    ],
)
def test_env_var_near_miss_names_the_variable_and_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, expected: str
) -> None:
    monkeypatch.setenv(variable, "5")
    with pytest.raises(ConfigError) as info:
        MemoryConfig.from_any({})
    assert info.value.field == variable
    assert f"unknown environment variable {variable!r} (did you mean {expected!r}?)" in str(info.value)
    with pytest.raises(ConfigError, match=variable):
        MemoryConfig()  # not only through from_any


def test_unrelated_memory_env_var_is_a_warning_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    monkeypatch.setenv("MEMORY_LIMIT", "512Mi")  # e.g. set by a container platform
    monkeypatch.setenv("MEMORY_WINDOW_SIZE", "4")
    with caplog.at_level(logging.WARNING, logger="memory_implementations.config"):
        assert MemoryConfig.from_any({}).window_size == 4
        MemoryConfig.from_any({})
    warnings = [r.getMessage() for r in caplog.records if r.name == "memory_implementations.config"]
    assert len(warnings) == 1
    assert "MEMORY_LIMIT is not a memory_implementations setting and is ignored" in warnings[0]


def test_unknown_env_var_warning_suggests_a_loose_match(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    monkeypatch.setenv("MEMORY_DATA_DIRECTORY", "/tmp/x")  # too far for an error, close enough for a hint
    with caplog.at_level(logging.WARNING, logger="memory_implementations.config"):
        MemoryConfig.from_any({})
    assert any("did you mean 'MEMORY_DATA_DIR'" in r.getMessage() for r in caplog.records)


OTHER_READERS = [f"MEMORY_SERVICE_{name.upper()}" for name in ServiceSettings.model_fields] + [
    "MEMORY_TEST_REDIS_URL",
    "MEMORY_TEST_PG_DSN",
    "MEMORY_TEST_PLAIN_PG_DSN",
    "MEMORY_TEST_POSTGREST_DIR",
]


def test_service_and_test_variables_are_never_flagged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_warnings: None
) -> None:
    for name in OTHER_READERS:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("MEMORY_SERVICE_RATE_LIMT", "1")  # the service's namespace: not ours to judge
    with caplog.at_level(logging.DEBUG, logger="memory_implementations.config"):
        MemoryConfig.from_any({})
    assert [r for r in caplog.records if r.name == "memory_implementations.config"] == []


def test_every_real_and_documented_variable_is_accepted(caplog: pytest.LogCaptureFixture, fresh_warnings: None) -> None:
    documented = re.findall(r"^#?\s*(MEMORY_[A-Z0-9_]+)=", (ROOT / "config" / "example.env").read_text(), re.MULTILINE)
    settings = [f"MEMORY_{name.upper()}" for name in MemoryConfig.model_fields]
    assert set(documented) == set(settings)  # example.env names no variable that does not exist
    with caplog.at_level(logging.DEBUG, logger="memory_implementations.config"):
        check_env_names([*settings, *documented, *OTHER_READERS, *CONVENTIONAL, "PATH"], MemoryConfig.model_fields)
    assert caplog.records == []


# --- config/default.toml and config/example.env ---------------------------------------------------


def test_default_toml_loads_and_equals_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    from_file = MemoryConfig.from_any({"config_file": "config/default.toml"})
    assert from_file.model_dump() == MemoryConfig.from_any({}).model_dump()
    assert from_file.default_context_priority == DEFAULT_PRIORITY


def test_default_toml_documents_every_key() -> None:
    text = (ROOT / "config" / "default.toml").read_text(encoding="utf-8")
    for name in MemoryConfig.model_fields:
        pattern = rf"^(#\s*)?{name}\s*=|^\[{name}\]"
        match = re.search(pattern, text, re.MULTILINE)
        assert match, f"config/default.toml does not document {name}"
        # a prose comment above the key (or above its group of keys) explains it
        before = text[: match.start()].rstrip("\n").splitlines()
        while before and re.match(r"^(#\s*)?\w+\s*=", before[-1]):
            before.pop()
        assert before and before[-1].startswith("# ") and len(before[-1]) > 10, f"{name} has no comment above it"


def test_default_toml_only_sets_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    data = tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))
    defaults = MemoryConfig.from_any({})
    for key, value in data.items():
        current = getattr(defaults, key)
        if key == "enabled_memories":
            current = [m.value for m in current]
        assert current == value, key


def test_example_env_names_every_key() -> None:
    text = (ROOT / "config" / "example.env").read_text(encoding="utf-8")
    for name in MemoryConfig.model_fields:
        assert re.search(rf"^#?\s*MEMORY_{name.upper()}=", text, re.MULTILINE), name
    for conventional in ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "GOOGLE_API_KEY", "SUPABASE_URL"):
        assert re.search(rf"^#?\s*{conventional}=", text, re.MULTILINE), conventional


# --- secrets never leak --------------------------------------------------------------------------

SECRETS = {
    "openai_api_key": "sk-live-OPENAI-9f8e7d",
    "google_api_key": "AIza-GOOGLE-1a2b3c",
    "supabase_key": "eyJhbGciOi-SUPABASE-4d5e",
    "redis_url": "redis://:REDISPW-77aa@cache:6379/0",
    "database_url": "postgresql://app:PGPW-31337@db.example.com:5432/app",
}
FRAGMENTS = ("OPENAI-9f8e7d", "GOOGLE-1a2b3c", "SUPABASE-4d5e", "REDISPW-77aa", "PGPW-31337")


def assert_clean(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text


def test_secrets_are_not_in_repr_str_or_public_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_GOOGLE_API_KEY", SECRETS["google_api_key"])
    cfg = MemoryConfig.from_any({k: v for k, v in SECRETS.items() if k != "google_api_key"})
    assert cfg.secret("google_api_key") == SECRETS["google_api_key"]
    public = cfg.public_dict()
    assert_clean(repr(cfg))
    assert_clean(str(cfg))
    assert_clean(json.dumps(public, default=str))
    assert_clean(cfg.model_dump_json())
    assert all(public[k] == "**********" for k in SECRETS)
    assert public["window_size"] == 10 and public["enabled_memories"][0] == "conversation_summary"


def test_bad_secret_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        MemoryConfig.from_any({"openai_api_key": ["sk-live-OPENAI-9f8e7d"]})
    assert info.value.field == "openai_api_key"
    assert_clean(str(info.value))


@pytest.mark.parametrize("as_json", [True, False])
def test_secrets_are_masked_in_log_output(as_json: bool, restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", json=as_json, stream=stream)
    cfg = MemoryConfig.from_any(SECRETS)
    log = structlog.get_logger("test.config")
    log.info("config_loaded", config=cfg.public_dict(), settings=cfg)
    log.info(
        "connecting",
        dsn=SECRETS["database_url"],
        redis=SECRETS["redis_url"],
        openai_api_key=SECRETS["openai_api_key"],
        headers={"Authorization": f"Bearer {SECRETS['supabase_key']}"},
        nested=[{"password": "PGPW-31337"}, {"token": SECRETS["google_api_key"]}],
    )
    log.warning(f"could not reach {SECRETS['database_url']}")
    try:
        raise RuntimeError(f"connect failed for {SECRETS['redis_url']}")
    except RuntimeError:
        log.exception("backend_down")
    logging.getLogger("psycopg.pool").warning("error connecting in %s", SECRETS["database_url"])
    output = stream.getvalue()
    # everything was written (the events are there) but no secret is
    for event in ("config_loaded", "connecting", "could not reach", "backend_down", "error connecting in"):
        assert event in output
    assert "db.example.com" in output and "***" in output
    assert_clean(output)
    if as_json:
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        connecting = next(line for line in lines if line["event"] == "connecting")
        assert connecting["dsn"] == "postgresql://app:***@db.example.com:5432/app"
        assert connecting["openai_api_key"] == "***"
