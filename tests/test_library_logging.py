"""Used as a plain library the package prints nothing; the application's ``logging`` decides, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from memory_implementations import ConfigError, ConversationBufferMemory, MemoryConfig
from memory_implementations.logging import (
    LIBRARY_LOGGER,
    MaskSecretsFilter,
    configure_logging,
    install_library_logging,
)

RUN_TIMEOUT_S = 300
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# The README's per-turn use, on the embedded default; then one deliberate warning and one failure that
# carry passwords, through the library's own loggers.
TURN = textwrap.dedent(
    """
    import asyncio, sys
    import structlog
    from memory_implementations import ContextRequest, MemoryOrchestrator

    async def main():
        orchestrator = MemoryOrchestrator({"data_dir": sys.argv[1]})
        await orchestrator.initialize()
        await orchestrator.store_turn(session_id="s1", user_id="u1", user_message="I live in Lisbon.",
                                      assistant_message="Noted: you live in Lisbon.")
        ctx = await orchestrator.get_comprehensive_context(
            ContextRequest(query="Where do I live?", session_id="s1", user_id="u1", max_total_tokens=2000))
        assert "Lisbon" in ctx.text, ctx.text
        await orchestrator.close()

    asyncio.run(main())
    log = structlog.get_logger("memory_implementations.test")
    log.warning("deliberate_warning", dsn="postgresql://u:hunter2@db.example/app", api_key="sk-hunter2")
    try:
        raise RuntimeError("cannot reach redis://:hunter2@cache:6379/0")
    except RuntimeError:
        log.exception("deliberate_failure")
    """
)


def run_script(prelude: str) -> subprocess.CompletedProcess[str]:
    """Run ``prelude`` + :data:`TURN` in a fresh interpreter: fresh HOME and data dir, no XDG_RUNTIME_DIR."""
    dropped = ("XDG_RUNTIME_DIR", "PYTHONWARNINGS", "REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "GOOGLE_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MEMORY_")}
    # a private temp dir: pytest's basetemp may be pruned by concurrent pytest sessions
    with tempfile.TemporaryDirectory(prefix="mi-test-logging-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env["HOME"] = str(home)
        script = Path(tmp) / "app.py"
        script.write_text(prelude + TURN, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, str(script), str(Path(tmp) / "data")],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            env=env,
            cwd=tmp,
            check=False,
        )
    assert proc.returncode == 0, f"exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def test_a_script_that_never_configures_logging_prints_nothing() -> None:
    proc = run_script("")
    assert proc.stdout == ""
    assert proc.stderr == ""  # no debug/info, no warning, no error, no RuntimeDirWarning


def test_basic_config_warning_shows_the_librarys_warnings_only_masked() -> None:
    proc = run_script("import logging\nlogging.basicConfig(level=logging.WARNING)\n")
    assert proc.stdout == ""
    err = proc.stderr
    assert "WARNING:memory_implementations.test:deliberate_warning dsn=postgresql://u:***@db.example/app" in err
    assert "api_key=***" in err
    assert "ERROR:memory_implementations.test:deliberate_failure" in err
    assert "redis://:***@cache:6379/0" in err and "Traceback" in err
    assert "hunter2" not in err
    assert not re.search(r"^(DEBUG|INFO):memory_implementations", err, re.MULTILINE), err
    assert "XDG_RUNTIME_DIR" not in err


def test_basic_config_debug_shows_the_per_turn_detail() -> None:
    proc = run_script("import logging, sys\nlogging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n")
    assert proc.stdout == ""
    err = proc.stderr
    assert re.search(r"^INFO:memory_implementations\.\S+:embedded_postgres_started", err, re.MULTILINE), err
    assert re.search(r"^DEBUG:memory_implementations\.\S+:\w+", err, re.MULTILINE), err
    assert "deliberate_warning dsn=postgresql://u:***@db.example/app" in err
    assert "hunter2" not in err


# --- in process ---------------------------------------------------------------------------------


@pytest.fixture
def library_logging() -> Iterator[logging.Logger]:
    """The library's default structlog setup (other tests may have reset or replaced it); restored after."""
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    library = logging.getLogger(LIBRARY_LOGGER)
    handlers, level = list(library.handlers), library.level
    structlog.reset_defaults()
    assert install_library_logging() is True
    yield library
    library.handlers[:] = handlers
    library.setLevel(level)
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


def capture(logger: logging.Logger, formatter: logging.Formatter) -> io.StringIO:
    """Attach a DEBUG handler writing to a new buffer to ``logger``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return stream


def test_events_reach_stdlib_as_plain_text_and_for_processor_formatter(library_logging: logging.Logger) -> None:
    plain = capture(library_logging, logging.Formatter("%(levelname)s %(name)s %(message)s"))
    rendered = capture(
        library_logging,
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()]
        ),
    )
    structlog.get_logger("memory_implementations.unit").info(
        "connected", dsn="postgresql://u:hunter2@h/db", password="hunter2", note="two words", count=3
    )
    assert plain.getvalue().strip() == (
        "INFO memory_implementations.unit connected dsn=postgresql://u:***@h/db password=*** note='two words' count=3"
    )
    event = json.loads(rendered.getvalue())
    assert event["event"] == "connected" and event["level"] == "info" and event["count"] == 3
    assert event["logger"] == "memory_implementations.unit"
    assert event["dsn"] == "postgresql://u:***@h/db" and event["password"] == "***"
    assert ISO_UTC.match(event["timestamp"]), event["timestamp"]


def test_levels_below_the_loggers_are_dropped(library_logging: logging.Logger) -> None:
    stream = capture(library_logging, logging.Formatter("%(message)s"))
    library_logging.setLevel(logging.WARNING)
    log = structlog.get_logger("memory_implementations.unit")
    log.debug("hidden_debug")
    log.info("hidden_info")
    log.warning("shown_warning")
    assert stream.getvalue() == "shown_warning\n"


def test_the_library_logger_has_a_null_handler_and_the_mask_filter(library_logging: logging.Logger) -> None:
    assert any(isinstance(h, logging.NullHandler) for h in library_logging.handlers)
    assert any(isinstance(f, MaskSecretsFilter) for f in library_logging.filters)
    install_library_logging()  # idempotent
    assert sum(isinstance(h, logging.NullHandler) for h in library_logging.handlers) == 1
    assert sum(isinstance(f, MaskSecretsFilter) for f in library_logging.filters) == 1


def test_an_applications_structlog_configuration_is_kept(library_logging: logging.Logger) -> None:
    mine = [structlog.processors.JSONRenderer()]
    structlog.configure(processors=mine, logger_factory=structlog.PrintLoggerFactory())
    assert install_library_logging() is False
    assert structlog.get_config()["processors"] == mine
    assert isinstance(structlog.get_config()["logger_factory"], structlog.PrintLoggerFactory)


def test_mask_filter_masks_stdlib_records() -> None:
    dsn = "postgresql://app:hunter2@db/app"
    record = logging.LogRecord(
        "psycopg.pool", logging.WARNING, __file__, 1, "error connecting in %s (%d)", (dsn, 3), None
    )
    assert MaskSecretsFilter().filter(record) is True
    assert record.getMessage() == "error connecting in postgresql://app:***@db/app (3)"
    try:
        raise RuntimeError(f"down: {dsn}")
    except RuntimeError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %(url)s", None, sys.exc_info())
    failed.args = {"url": dsn, "token": "tok-hunter2"}
    MaskSecretsFilter().filter(failed)
    text = logging.Formatter("%(message)s").format(failed)
    assert "failed postgresql://app:***@db/app" in text and "RuntimeError: down: postgresql://app:***@db/app" in text
    assert "hunter2" not in text


def test_configure_logging_timestamps_are_iso_utc() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    stream = io.StringIO()
    try:
        configure_logging("INFO", json=True, stream=stream)
        structlog.get_logger("memory_implementations.unit").info("structlog_line")
        logging.getLogger("third.party").warning("stdlib_line")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["structlog_line", "stdlib_line"]
    assert all(ISO_UTC.match(line["timestamp"]) for line in lines), lines


def test_log_level_sets_the_library_logger_only_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMORY_LOG_LEVEL", raising=False)
    monkeypatch.delenv("MEMORY_CONFIG_FILE", raising=False)
    library = logging.getLogger(LIBRARY_LOGGER)
    level = library.level
    try:
        library.setLevel(logging.NOTSET)
        ConversationBufferMemory({})  # the default: the application's levels decide
        assert library.level == logging.NOTSET
        ConversationBufferMemory({"log_level": "debug"})
        assert library.level == logging.DEBUG
        monkeypatch.setenv("MEMORY_LOG_LEVEL", "ERROR")
        ConversationBufferMemory({})
        assert library.level == logging.ERROR
    finally:
        library.setLevel(level)
    assert MemoryConfig.from_any({"log_level": "warning"}).log_level == "WARNING"
    with pytest.raises(ConfigError):
        MemoryConfig.from_any({"log_level": "LOUD"})
