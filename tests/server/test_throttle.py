"""RFC 6120 §13.9.4: the authentication failure throttle — delays, window, cap, bounded memory."""

from __future__ import annotations

from xmppcore.server.throttle import FailureThrottle


def throttle(*, base: float = 1.0, cap: float = 10.0, window: float = 300.0, max_keys: int = 100_000) -> FailureThrottle:
    return FailureThrottle(base_delay=base, max_delay=cap, window=window, max_keys=max_keys)


def test_no_failures_no_delay() -> None:
    assert throttle().delay(0.0, "ip:1", "user:alice") == 0.0
    assert throttle().delay(0.0) == 0.0


def test_the_delay_doubles_per_recent_failure_up_to_the_cap() -> None:
    t = throttle(base=1.0, cap=10.0)
    delays = []
    for n in range(6):
        t.record_failure(float(n), "ip:1")
        delays.append(t.delay(float(n), "ip:1"))
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_worst_key_decides() -> None:
    t = throttle()
    for now in (1.0, 2.0, 3.0):
        t.record_failure(now, "user:alice")
    t.record_failure(4.0, "ip:1")
    assert t.delay(5.0, "ip:2", "user:alice") == 4.0
    assert t.delay(5.0, "ip:1", "user:bob") == 1.0
    assert t.delay(5.0, "ip:2", "user:bob") == 0.0


def test_failures_expire_after_the_window() -> None:
    t = throttle(window=60.0)
    t.record_failure(0.0, "ip:1")
    t.record_failure(30.0, "ip:1")
    assert t.delay(59.0, "ip:1") == 2.0
    assert t.delay(60.0, "ip:1") == 1.0   # the first one is exactly a window old
    assert t.delay(90.0, "ip:1") == 0.0
    t.record_failure(91.0, "ip:1")
    assert t.delay(91.0, "ip:1") == 1.0   # counting starts again


def test_a_zero_base_delay_disables_the_throttle() -> None:
    t = throttle(base=0.0, cap=0.0)
    t.record_failure(0.0, "ip:1")
    assert t.delay(0.0, "ip:1") == 0.0


def test_a_huge_number_of_failures_stays_at_the_cap() -> None:
    t = throttle(base=0.5, cap=30.0)
    for n in range(1000):
        t.record_failure(n * 0.01, "ip:1")
    assert t.delay(10.0, "ip:1") == 30.0


def test_success_clears_only_the_given_keys() -> None:
    t = throttle()
    t.record_failure(0.0, "ip:1", "user:alice")
    t.record_success("user:alice")
    assert t.delay(1.0, "user:alice") == 0.0
    assert t.delay(1.0, "ip:1") == 1.0
    t.record_success("user:nobody")  # unknown keys are fine


def test_memory_is_bounded_by_forgetting_the_least_recent_keys() -> None:
    t = throttle(max_keys=3)
    for i in range(3):
        t.record_failure(0.0, f"ip:{i}")
    t.record_failure(1.0, "ip:0")  # ip:0 is recent again; ip:1 is now the oldest
    t.record_failure(2.0, "ip:3")
    assert [t.delay(3.0, f"ip:{i}") > 0 for i in range(4)] == [True, False, True, True]
    for i in range(100, 1100):
        t.record_failure(4.0, f"ip:{i}")
    assert sum(t.delay(5.0, f"ip:{i}") > 0 for i in range(1100)) == 3
