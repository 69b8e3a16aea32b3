"""Slowing down password guessing (RFC 6120 §13.9.4 leaves the method to us).

Failures are remembered per client address and per account for a window; the next attempt
from the same address, or for the same account, waits ``base * 2**(n-1)`` seconds, capped.
Pure bookkeeping with the clock passed in; the runtime does the waiting.
"""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["FailureThrottle"]


class FailureThrottle:
    """Remembers recent authentication failures; bounded in memory."""

    def __init__(self, *, base_delay: float, max_delay: float, window: float, max_keys: int = 100_000) -> None:
        self._base = base_delay
        self._max = max_delay
        self._window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    def delay(self, now: float, *keys: str) -> float:
        """How long to wait before checking credentials for these keys (address, account)."""
        count = max((self._recent(k, now) for k in keys), default=0)
        if count == 0 or self._base <= 0:
            return 0.0
        return min(self._max, self._base * float(1 << min(count - 1, 30)))

    def record_failure(self, now: float, *keys: str) -> None:
        for key in keys:
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque(maxlen=64)
            else:
                self._failures.move_to_end(key)
            times.append(now)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def record_success(self, *keys: str) -> None:
        """A success clears the account's record (not the address's)."""
        for key in keys:
            self._failures.pop(key, None)
