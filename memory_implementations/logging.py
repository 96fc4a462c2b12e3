"""structlog configuration: JSON lines for the service, a pretty console for the CLI; secrets masked.

``configure_logging(level, json=...)`` sets up structlog and routes the standard library's ``logging``
(psycopg, uvicorn, httpx ...) through the same processors, so every line passes :func:`mask_secrets`:
values of keys that name a secret (``*key*``, ``*password*``, ``*secret*``, ``*token*`` ...) become
``***`` and passwords inside URLs/DSNs (``postgresql://user:pw@host`` -> ``postgresql://user:***@host``)
are masked wherever they appear, including the event text and formatted tracebacks.
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
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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


__all__ = ["MASK", "configure_logging", "is_secret_key", "mask_secrets", "mask_text", "mask_value", "masked"]
