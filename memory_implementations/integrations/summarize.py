"""Fold older chat messages into one summary message: ``summarize_messages`` and ``SummarizationMiddleware``.

The leading system message(s) and the last ``keep_last`` messages are kept; everything between is
summarised by a :class:`~memory_implementations.providers.interfaces.Summarizer` — the offline
extractive one by default (no key, no network), or the configured LLM (``llm_provider="openai"`` /
``"gemini"``, keys from the usual environment variables). A tool result is never separated from the
assistant message that called it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import MemoryConfig
from ..errors import ValidationError
from ..providers.interfaces import Summarizer
from ..types import Message
from .messages import _check_messages, _leading_system, count_tokens, message_role, message_text

SUMMARY_PREFIX = "Summary of the earlier conversation:"
ROLES = ("user", "assistant", "system", "tool")


@dataclass
class SummaryResult:
    """What :func:`summarize_messages` did: the new message list and what it folded."""

    messages: list[Any]
    summary: str
    original_count: int
    summarized_count: int
    summarizer: str = field(default="")


def _as_message(message: Any, index: int) -> Message:
    role = message_role(message)
    if role not in ROLES:
        raise ValidationError(f"messages[{index}] has an unknown role {role!r}", field=f"messages[{index}].role")
    return Message(session_id="summary", role=role, content=message_text(message))


def _positive(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a non-negative" if minimum == 0 else "a positive"
        raise ValidationError(f"'{name}' must be {kind} integer", field=name)
    return value


def resolve_summarizer(summarizer: Summarizer | None, llm_provider: str | None, llm_model: str | None,
                       model: str | None) -> Summarizer:
    """The given summariser, one for ``llm_provider``/``llm_model``, or the offline extractive one."""
    if summarizer is not None:
        if not isinstance(summarizer, Summarizer):
            raise ValidationError("'summarizer' must have an async summarize(previous, messages, max_tokens=)",
                                  field="summarizer")
        return summarizer
    from ..providers.llm import build_summarizer

    settings: dict[str, Any] = {"llm_provider": llm_provider or "offline"}
    if llm_model:
        settings["summarization_model"] = llm_model
    if model:
        settings["tokenizer_model"] = model
    return build_summarizer(MemoryConfig.from_any(settings))


@dataclass
class _Plan:
    head: list[Any]
    older: list[Any]
    recent: list[Any]
    folded: list[Message]


def _plan(messages: Sequence[Any], keep_last: Any, preserve_system: bool) -> _Plan:
    msgs = _check_messages(messages)
    keep = _positive(keep_last, "keep_last", minimum=0)
    head = _leading_system(msgs) if preserve_system else []
    rest = msgs[len(head) :]
    split = max(0, len(rest) - keep)
    while split < len(rest) and message_role(rest[split]) == "tool":
        split += 1  # a tool result goes with the call it answers
    older = rest[:split]
    folded = [_as_message(m, len(head) + i) for i, m in enumerate(older) if message_text(m).strip()]
    return _Plan(head, older, rest[split:], folded)


def _result(plan: _Plan, summary: str, original: int, name: str) -> SummaryResult:
    out: list[Any] = [*plan.head]
    summary = summary.strip()
    if summary:
        out.append({"role": "system", "content": f"{SUMMARY_PREFIX}\n{summary}"})
    return SummaryResult([*out, *plan.recent], summary, original, len(plan.older), name)


def _prepare(
    messages: Sequence[Any], keep_last: Any, summarizer: Summarizer | None, llm_provider: str | None,
    llm_model: str | None, max_summary_tokens: Any, model: str | None, preserve_system: bool,
) -> tuple[_Plan, Summarizer | None]:
    """Validate, split the messages, and pick the summariser (None when there is nothing to fold)."""
    _positive(max_summary_tokens, "max_summary_tokens", minimum=1)
    plan = _plan(messages, keep_last, preserve_system)
    if not plan.older:
        return plan, None
    return plan, resolve_summarizer(summarizer, llm_provider, llm_model, model)


def _unchanged(messages: Sequence[Any]) -> SummaryResult:
    return SummaryResult(list(messages), "", len(messages), 0)


async def asummarize_messages(
    messages: Sequence[Any],
    keep_last: int = 6,
    *,
    summarizer: Summarizer | None = None,
    llm_provider: str | None = None,
    llm_model: str | None = None,
    max_summary_tokens: int = 256,
    model: str | None = None,
    preserve_system: bool = True,
) -> SummaryResult:
    """Fold all but the last ``keep_last`` messages (after the system message) into one summary message."""
    plan, chosen = _prepare(messages, keep_last, summarizer, llm_provider, llm_model, max_summary_tokens, model,
                            preserve_system)
    if chosen is None:
        return _unchanged(messages)
    summary = await chosen.summarize(None, plan.folded, max_tokens=max_summary_tokens) if plan.folded else ""
    return _result(plan, summary, len(messages), chosen.name)


def summarize_messages(
    messages: Sequence[Any],
    keep_last: int = 6,
    *,
    summarizer: Summarizer | None = None,
    llm_provider: str | None = None,
    llm_model: str | None = None,
    max_summary_tokens: int = 256,
    model: str | None = None,
    preserve_system: bool = True,
) -> SummaryResult:
    """Blocking :func:`asummarize_messages` (from async code, await ``asummarize_messages`` instead)."""
    plan, chosen = _prepare(messages, keep_last, summarizer, llm_provider, llm_model, max_summary_tokens, model,
                            preserve_system)
    if chosen is None:
        return _unchanged(messages)
    run_sync = getattr(chosen, "summarize_sync", None)
    if not plan.folded:
        summary = ""
    elif callable(run_sync):  # the offline summariser is plain CPU work
        summary = run_sync(None, plan.folded, max_tokens=max_summary_tokens)
    else:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            summary = asyncio.run(chosen.summarize(None, plan.folded, max_tokens=max_summary_tokens))
        else:
            raise ValidationError("summarize_messages() with an LLM summariser cannot block a running event loop; "
                                  "await asummarize_messages() instead", field="summarizer")
    return _result(plan, summary, len(messages), chosen.name)


class SummarizationMiddleware:
    """Summarise a conversation once it grows past ``trigger_tokens`` and/or ``trigger_messages``."""

    def __init__(
        self,
        *,
        trigger_tokens: int | None = None,
        trigger_messages: int | None = None,
        keep_last: int = 10,
        summarizer: Summarizer | None = None,
        llm_provider: str | None = None,
        llm_model: str | None = None,
        max_summary_tokens: int = 256,
        model: str | None = None,
    ) -> None:
        """At least one trigger is required; the other options are :func:`summarize_messages`'s."""
        if trigger_tokens is None and trigger_messages is None:
            raise ValidationError("give 'trigger_tokens' and/or 'trigger_messages'", field="trigger_tokens")
        for name, value in (("trigger_tokens", trigger_tokens), ("trigger_messages", trigger_messages)):
            if value is not None:
                _positive(value, name, minimum=1)
        _positive(keep_last, "keep_last", minimum=0)
        _positive(max_summary_tokens, "max_summary_tokens", minimum=1)
        self.trigger_tokens = trigger_tokens
        self.trigger_messages = trigger_messages
        self.keep_last = keep_last
        self.model = model
        self.max_summary_tokens = max_summary_tokens
        self.summarizer = resolve_summarizer(summarizer, llm_provider, llm_model, model)

    def should_summarize(self, messages: Sequence[Any]) -> bool:
        """True when ``messages`` exceed a trigger and there is something older than ``keep_last`` to fold."""
        msgs = _check_messages(messages)
        if len(msgs) - len(_leading_system(msgs)) <= self.keep_last:
            return False
        if self.trigger_messages is not None and len(msgs) > self.trigger_messages:
            return True
        return self.trigger_tokens is not None and count_tokens(msgs, self.model) > self.trigger_tokens

    def _options(self) -> dict[str, Any]:
        return {"keep_last": self.keep_last, "summarizer": self.summarizer,
                "max_summary_tokens": self.max_summary_tokens, "model": self.model}

    def process(self, messages: Sequence[Any]) -> list[Any]:
        """``messages`` summarised when a trigger is exceeded, else unchanged (a new list)."""
        if not self.should_summarize(messages):
            return list(messages)
        return summarize_messages(messages, **self._options()).messages

    async def aprocess(self, messages: Sequence[Any]) -> list[Any]:
        """Async :meth:`process`."""
        if not self.should_summarize(messages):
            return list(messages)
        return (await asummarize_messages(messages, **self._options())).messages


__all__ = ["SUMMARY_PREFIX", "SummarizationMiddleware", "SummaryResult", "asummarize_messages",
           "resolve_summarizer", "summarize_messages"]
