"""Unknown ``MEMORY_*`` environment variables: a near-miss of a setting is an error, anything else a warning.

The rule: ``MEMORY_<NAME>`` whose ``<NAME>`` is no setting is

* a :class:`ConfigError` naming the variable when ``<NAME>`` is a close match of a setting
  (``MEMORY_WINDOW_SIZ`` -> ``MEMORY_WINDOW_SIZE``): almost surely a typo, and ignoring it would run
  with a value the user did not choose;
* otherwise a warning on the ``memory_implementations.config`` logger (once per variable and process):
  other software may own a ``MEMORY_*`` name (``MEMORY_LIMIT`` ...), so it must not stop a deployment.

``MEMORY_SERVICE_*`` (the HTTP service's settings) and ``MEMORY_TEST_*`` (the test suite's servers)
belong to other readers and are never reported.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable

from .errors import ConfigError

PREFIX = "memory_"
OTHER_READERS = ("memory_service_", "memory_test_")
# how similar (difflib ratio of the part after MEMORY_) a name must be to a setting to count as a typo
NEAR_MISS_CUTOFF = 0.8
HINT_CUTOFF = 0.6

log = logging.getLogger("memory_implementations.config")
_warned: set[str] = set()


def check_env_names(env_names: Iterable[str], settings: Iterable[str]) -> None:
    """Raise ConfigError for a ``MEMORY_*`` variable that nearly names a setting; warn about other unknown ones."""
    known = {s.lower() for s in settings}
    for env_name in sorted(env_names):
        lowered = env_name.lower()
        if not lowered.startswith(PREFIX) or lowered.startswith(OTHER_READERS):
            continue
        name = lowered[len(PREFIX) :]
        if name in known:
            continue
        shown = _original_name(lowered)
        near = difflib.get_close_matches(name, known, n=1, cutoff=NEAR_MISS_CUTOFF)
        if near:
            raise ConfigError(
                f"unknown environment variable {shown!r} (did you mean {'MEMORY_' + near[0].upper()!r}?)",
                field=shown,
            )
        if shown not in _warned:
            _warned.add(shown)
            hint = difflib.get_close_matches(name, known, n=1, cutoff=HINT_CUTOFF)
            suggestion = f" (did you mean {'MEMORY_' + hint[0].upper()!r}?)" if hint else ""
            log.warning(
                "environment variable %s is not a memory_implementations setting and is ignored%s",
                shown,
                suggestion,
            )


def _original_name(lowered: str) -> str:
    """The variable as spelled in the environment (settings read it case-insensitively)."""
    for name in os.environ:
        if name.lower() == lowered:
            return name
    return lowered.upper()


__all__ = ["check_env_names"]
