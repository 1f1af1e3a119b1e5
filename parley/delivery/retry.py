"""How long a retryable failure waits before the next attempt, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded (zulip's retry discipline, STYLE.md §3).

    Attempt 1 failing waits about ``base_s``, attempt 2 about twice that, and so
    on up to ``max_delay_s``. The jitter keeps a burst of failures (a platform
    outage) from coming back as one synchronized burst of retries. After
    ``max_attempts`` sends the job is dead-lettered.
    """

    max_attempts: int = 8
    base_s: float = 2.0
    max_delay_s: float = 900.0
    jitter: float = 0.5  # the delay is drawn from [(1 - jitter) * d, d]

    def delay_s(self, attempts: int, retry_after_s: float | None = None) -> float:
        """The wait after the ``attempts``-th failed send; never less than the platform asked for."""
        ceiling = min(self.max_delay_s, self.base_s * 2 ** max(0, attempts - 1))
        delay = ceiling * (1 - self.jitter * random.random())  # jitter, not security
        return float(max(delay, retry_after_s or 0.0))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
