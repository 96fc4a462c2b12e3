"""The scripted demo behind ``memory-orchestrator demo``: a conversation over several sessions and runs."""

from .runner import BUDGET, Demo, DemoResult, demo_config, run_demo, simulated_outage
from .script import DEMO_USER, Turn, first_run, returning_run

__all__ = [
    "BUDGET",
    "DEMO_USER",
    "Demo",
    "DemoResult",
    "Turn",
    "demo_config",
    "first_run",
    "returning_run",
    "run_demo",
    "simulated_outage",
]
