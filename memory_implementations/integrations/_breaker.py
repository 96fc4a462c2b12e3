"""A circuit breaker for memory reads: after a failure, skip memory for a while instead of paying for it.

While memory is down every read would otherwise spend its connect attempts (and sometimes its whole
deadline) before failing open. After a failure the breaker *opens* for ``initial_s`` seconds, during
which reads are skipped at no cost; the first read after that is a probe: success closes the breaker,
another failure opens it again for twice as long (up to ``max_s``). ``initial_s = 0`` disables it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed → open (after a failure) → one probe after the window → closed or open for longer."""

    def __init__(self, initial_s: float = 1.0, max_s: float = 30.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``initial_s`` is the first open window (0 disables the breaker), doubled per failure up to ``max_s``."""
        self.initial_s = float(initial_s)
        self.max_s = max(float(max_s), self.initial_s)
        self._clock = clock
        self._window = self.initial_s
        self._open_until = 0.0
        self.last_failure: str | None = None
        self.failures = 0

    @property
    def enabled(self) -> bool:
        """False when ``initial_s`` is 0."""
        return self.initial_s > 0

    @property
    def is_open(self) -> bool:
        """True while reads are being skipped."""
        return self.enabled and self._clock() < self._open_until

    def remaining_s(self) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        return max(0.0, self._open_until - self._clock()) if self.enabled else 0.0

    def allow(self) -> bool:
        """True when a read may be tried; a probe after the window keeps others out until it reports."""
        if not self.enabled or self.failures == 0:
            return True
        now = self._clock()
        if now < self._open_until:
            return False
        self._open_until = now + self._window  # the probe's slot: concurrent reads stay skipped
        return True

    def success(self) -> None:
        """Memory answered: close the breaker and reset the window."""
        self.failures = 0
        self._window = self.initial_s
        self._open_until = 0.0
        self.last_failure = None

    def failure(self, reason: str) -> None:
        """Memory failed: open the breaker for the current window, and double the next one."""
        if not self.enabled:
            return
        self.failures += 1
        self.last_failure = reason
        self._open_until = self._clock() + self._window
        self._window = min(self._window * 2, self.max_s)

    def reset(self) -> None:
        """Close the breaker now (e.g. when the application knows memory is back)."""
        self.success()


__all__ = ["CircuitBreaker"]
