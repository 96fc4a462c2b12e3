"""The demo's scripted conversation: who says what, and what each turn is meant to show."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import MemoryType

DEMO_USER = "demo-ada"
META_NAMESPACE = "demo_meta"


@dataclass(frozen=True)
class WorkingNote:
    """An item (or a reasoning step) the app puts into working memory after a turn."""

    key: str
    content: str
    importance: float = 0.5
    step_type: str | None = None  # when set: a reasoning step instead of an item


@dataclass(frozen=True)
class Turn:
    """One scripted exchange and what it demonstrates."""

    session: str
    user: str
    reply: str = ""
    note: str = ""
    facts: dict[str, str] = field(default_factory=dict)  # key-value facts the app records after the turn
    recall: tuple[str, ...] = ()  # facts that must come back from memory, checked in the composed context
    history: tuple[str, ...] = ()  # key-value keys whose superseded values to show after the turn
    working: tuple[WorkingNote, ...] = ()
    outage: MemoryType | None = None  # a tier made to fail for this turn only (simulated outage)


def first_run() -> list[Turn]:
    """Run 1: introductions, preferences, a work problem, a move, then questions about old facts."""
    monday, friday = "ada-monday", "ada-friday"
    return [
        Turn(
            monday,
            "Hi! My name is Ada and I work as a data engineer at Northwind Logistics.",
            "Nice to meet you, Ada! What are you working on this week?",
            note="Introductions. The app records the profile in the key-value tier; entities are extracted "
            "in the background.",
            facts={"name": "Ada", "job": "data engineer at Northwind Logistics"},
        ),
        Turn(
            monday,
            "I prefer concise answers with Python examples.",
            "Noted: concise answers, with Python examples.",
            note="A preference, kept in the key-value tier.",
            facts={"answer_style": "concise, with Python examples"},
        ),
        Turn(
            monday,
            "I live in Lisbon, near the river, and my dog is called Biscuit.",
            "Lisbon is lovely, and hello to Biscuit!",
            note="Two facts in one message: the city (key-value) and the dog's name (only in the conversation).",
            facts={"city": "Lisbon"},
        ),
        Turn(
            monday,
            "Our Kafka consumers fall behind during the nightly batch job.",
            "How many partitions does the topic have, and how many consumers are in the group?",
            note="Work talk. The app tracks the task in working memory.",
            working=(WorkingNote("goal", "Fix Kafka consumer lag in the nightly batch", 0.9),),
        ),
        Turn(
            monday,
            "Twelve partitions, but only three consumers in the group.",
            "Then scale the group to twelve consumers so every partition has its own.",
            note="The reasoning chain grows in working memory.",
            working=(
                WorkingNote("partitions", "12 partitions, 3 consumers", 0.6),
                WorkingNote("step", "Lag comes from 3 consumers sharing 12 partitions", step_type="thought"),
                WorkingNote("step", "Scale the consumer group to 12", step_type="action"),
            ),
        ),
        Turn(
            monday,
            "That fixed it, thanks! Next week I want to tune the Postgres autovacuum settings.",
            "Great! Happy to look at autovacuum with you next week.",
            note="By now the early messages have left the 4-message buffer window.",
        ),
        Turn(
            monday,
            "Big news: I just moved to Berlin!",
            "Congratulations on the move to Berlin!",
            note="Supersession: the new city replaces the old one; the old value is kept as history.",
            facts={"city": "Berlin"},
            history=("city",),
        ),
        Turn(
            monday,
            "Sorry, what did I say my dog is called?",
            note="Asked many turns later: the buffer has moved on, so the answer must come from the summary, "
            "vector or entity tiers.",
            recall=("Biscuit",),
        ),
        Turn(
            friday,
            "Where do I live these days?",
            note="A new session, with the vector tier down for this one turn (simulated outage): the turn is "
            "marked degraded and still answers from the other tiers.",
            recall=("Berlin",),
            outage=MemoryType.VECTOR_DATABASE,
        ),
    ]


def returning_run(run: int) -> list[Turn]:
    """Run 2 and later: a new process and session; the questions are answered from what run 1 stored."""
    session = f"ada-run{run}"
    return [
        Turn(
            session,
            "Hello again! Remind me: what is my dog called, and which city do I live in now?",
            note="Nothing in this run has mentioned the dog or the city: both answers come from memory "
            "written by the first run.",
            recall=("Biscuit", "Berlin"),
        ),
        Turn(
            session,
            "From now on I'd like Go examples instead of Python.",
            "Got it: concise answers, with Go examples from now on.",
            note="Another supersession: the answer style changes, the earlier one moves to history.",
            facts={"answer_style": "concise, with Go examples"},
            history=("answer_style",),
        ),
    ]


__all__ = ["DEMO_USER", "META_NAMESPACE", "Turn", "WorkingNote", "first_run", "returning_run"]
