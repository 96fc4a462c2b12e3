"""Logging: quiet as a library, JSON lines for the service, a pretty console for the CLI; secrets masked.

As a library (:func:`install_library_logging`, run when the package is imported) nothing is printed:
unless the application configured structlog itself, our structlog events are handed to the standard
library's ``logging`` under the ``memory_implementations`` logger hierarchy, which carries a
``logging.NullHandler`` and a :class:`MaskSecretsFilter`. The application decides what is shown
(``logging.basicConfig(level=logging.WARNING)`` shows our warnings), as with any Python library.
Events reach ``logging`` as a dict that prints as ``event key=value ...`` under a plain formatter and is
rendered natively by ``structlog.stdlib.ProcessorFormatter``; it carries an ISO 8601 UTC ``timestamp``,
the one format every output of this package uses.

``configure_logging(level, json=...)`` (the CLI and ``serve``; an application may call it too) sets up
structlog and routes the standard library's ``logging`` (psycopg, uvicorn, httpx ...) through the same
processors, so every line passes :func:`mask_secrets`: values of keys that name a secret (``*key*``,
``*password*``, ``*secret*``, ``*token*`` ...) become ``***`` and passwords inside URLs/DSNs
(``postgresql://user:pw@host`` -> ``postgresql://user:***@host``) are masked wherever they appear,
including the event text and formatted tracebacks.
"""

from __future__ import annotations

import logging as stdlib_logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "***"

_SECRET_PARTS = frozenset(
    {"key", "apikey", "password", "passwd", "pwd", "secret", "token", "credential", "credentials", "authorization"}
)
_SECRET_SUBSTRINGS = ("password", "secret", "apikey", "api_key", "passwd", "access_token", "private_key")
# scheme://user:password@  and  scheme://:password@  (redis)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)(?P<tail>@)")
# libpq keyword form: password=secret / password='sec ret'
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s']+)", re.IGNORECASE)
# Authorization: Bearer sk-...
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<pw>[A-Za-z0-9._~+/\-]+=*)")
_STD_HANDLER_NAME = "memory_implementations"


def is_secret_key(name: str) -> bool:
    """True when a field/log key name designates a secret (``openai_api_key``, ``password``, ``token`` ...)."""
    lowered = name.lower()
    if any(s in lowered for s in _SECRET_SUBSTRINGS):
        return True
    parts = re.split(r"[_\-.\s]+", lowered)
    return any(p in _SECRET_PARTS for p in parts)


def mask_text(text: str) -> str:
    """Mask passwords embedded in URLs/DSNs, libpq ``password=`` pairs and bearer tokens within ``text``."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)


def mask_value(key: str | None, value: Any) -> Any:
    """Mask one value: whole value when ``key`` names a secret, else embedded passwords; recurses into containers."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else value
    if key is not None and is_secret_key(key) and isinstance(value, str | bytes) and value:
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(mask_value(None, v) for v in value)
    if isinstance(value, list | set | frozenset):
        return [mask_value(None, v) for v in value]
    return value


def mask_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and passwords inside URLs in every value."""
    for key in list(event_dict):
        event_dict[key] = mask_value(None if key in ("event", "exception") else key, event_dict[key])
    return event_dict


def _mask_arg(value: Any) -> Any:
    """Mask one ``%``-argument of a log record, keeping numbers (``%d``) and unaffected objects as they are."""
    if value is None or isinstance(value, bool | int | float):
        return value
    masked_value = mask_value(None, value)
    if masked_value is not value or isinstance(value, str):
        return masked_value
    text = str(value)
    cleaned = mask_text(text)
    return cleaned if cleaned != text else value


class MaskSecretsFilter(stdlib_logging.Filter):
    """``logging.Filter`` that masks secrets in a record's message, arguments, structlog event and traceback.

    Attached to the ``memory_implementations`` loggers by :func:`install_library_logging`; add it to your own
    handler (``handler.addFilter(MaskSecretsFilter())``) to mask third-party lines (psycopg, httpx ...) too.
    """

    def filter(self, record: stdlib_logging.LogRecord) -> bool:
        """Mask ``record`` in place; never drops it."""
        msg = record.msg
        if isinstance(msg, dict):  # a structlog event dict (ours or ProcessorFormatter.wrap_for_formatter's)
            mask_secrets(None, record.levelname.lower(), msg)
        elif isinstance(msg, str):
            record.msg = mask_text(msg)
        else:
            record.msg = _mask_arg(msg)
        if isinstance(record.args, Mapping):
            record.args = {k: mask_value(str(k), v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_mask_arg(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = stdlib_logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


LIBRARY_LOGGER = "memory_implementations"
_PLAIN_HIDDEN = frozenset({"event", "timestamp", "level", "logger", "exception", "stack"})
_FILTER = MaskSecretsFilter()


class _StdlibEvent(dict[str, Any]):
    """A structlog event handed to ``logging``: prints as ``event key=value ...`` under a plain formatter."""

    def __str__(self) -> str:
        """``event key=value ...`` plus the exception/stack text, as a plain ``logging.Formatter`` shows it."""
        parts = [str(self.get("event", ""))]
        for key, value in self.items():
            if key in _PLAIN_HIDDEN or key.startswith("_"):
                continue
            plain = isinstance(value, str) and value and not any(c.isspace() for c in value)
            parts.append(f"{key}={value}" if plain else f"{key}={value!r}")
        extra = [str(self[k]) for k in ("stack", "exception") if self.get(k)]
        return "\n".join([" ".join(parts), *extra])


def _to_stdlib(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Last structlog processor: pass the event to the stdlib logger, ProcessorFormatter-compatible."""
    return (_StdlibEvent(event_dict),), {"extra": {"_logger": logger, "_name": method_name}}


class _LibraryLoggerFactory(structlog.stdlib.LoggerFactory):
    """``structlog.stdlib.LoggerFactory`` that puts :class:`MaskSecretsFilter` on our own loggers."""

    def __call__(self, *args: Any) -> Any:
        """The stdlib logger named by ``args``, masked when it belongs to ``memory_implementations``."""
        logger = super().__call__(*args)
        if (logger.name == LIBRARY_LOGGER or logger.name.startswith(LIBRARY_LOGGER + ".")) and (
            _FILTER not in logger.filters
        ):
            logger.addFilter(_FILTER)
        return logger


def _timestamper() -> Processor:
    """The one timestamp format of every output: ISO 8601 in UTC (``2026-12-03T10:00:00.123456Z``)."""
    return structlog.processors.TimeStamper(fmt="iso", utc=True)


def install_library_logging() -> bool:
    """Make the package quiet by default: NullHandler + masking on ``memory_implementations``, structlog -> stdlib.

    structlog is configured only when the application has not configured it (``structlog.is_configured()``);
    returns whether it was. Loggers are not cached, so a later ``structlog.configure`` (or
    :func:`configure_logging`) by the application takes effect everywhere. Idempotent.
    """
    library = stdlib_logging.getLogger(LIBRARY_LOGGER)
    if not any(isinstance(h, stdlib_logging.NullHandler) for h in library.handlers):
        library.addHandler(stdlib_logging.NullHandler())
    if _FILTER not in library.filters:
        library.addFilter(_FILTER)
    if structlog.is_configured():
        return False
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            _timestamper(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            mask_secrets,
            _to_stdlib,
        ],
        logger_factory=_LibraryLoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return True


def set_library_level(level: str | int | None) -> None:
    """Set the threshold of the ``memory_implementations`` logger (None: NOTSET, the application's levels decide)."""
    number = stdlib_logging.NOTSET if level is None else _level_number(level)
    stdlib_logging.getLogger(LIBRARY_LOGGER).setLevel(number)


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at write time (survives pytest's capture swapping it)."""

    def write(self, text: str) -> int:
        """Write ``text`` to the current stderr."""
        return sys.stderr.write(text)

    def flush(self) -> None:
        """Flush the current stderr."""
        sys.stderr.flush()

    def isatty(self) -> bool:
        """Whether the current stderr is a terminal."""
        return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = stdlib_logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return number


def configure_logging(level: str | int = "INFO", json: bool = False, *, stream: TextIO | None = None) -> None:
    """Configure structlog (and stdlib logging) to write ``level``+ events to ``stream`` (default stderr)."""
    number = _level_number(level)
    out: Any = stream if stream is not None else _Stderr()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamper(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        mask_secrets,
    ]
    renderer: Processor
    if json:
        renderer = structlog.processors.JSONRenderer(default=repr)
    else:
        colors = bool(getattr(out, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(number, out, shared, renderer)


def _configure_stdlib(number: int, out: Any, shared: list[Processor], renderer: Processor) -> None:
    """Send the standard library's log records through the same processors and renderer."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, mask_secrets, renderer],
    )
    handler = stdlib_logging.StreamHandler(out)
    handler.set_name(_STD_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = stdlib_logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _STD_HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Third-party libraries stay at WARNING unless DEBUG is asked for.
    root.setLevel(number if number <= stdlib_logging.DEBUG else max(number, stdlib_logging.WARNING))


def masked(data: MutableMapping[str, Any] | Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with secrets masked (for printing diagnostics outside of logging)."""
    return {str(k): mask_value(str(k), v) for k, v in data.items()}


__all__ = [
    "LIBRARY_LOGGER",
    "MASK",
    "MaskSecretsFilter",
    "configure_logging",
    "install_library_logging",
    "is_secret_key",
    "mask_secrets",
    "mask_text",
    "mask_value",
    "masked",
    "set_library_level",
]
