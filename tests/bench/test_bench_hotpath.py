"""bench/hotpath.py runs at tiny scale: each step measured, nothing lost on the way (no timings checked)."""

from __future__ import annotations

from bench.hotpath import measure


async def test_every_step_is_measured() -> None:
    results = await measure(count=50, repeat=1)
    assert set(results) == {"parse", "route", "serialize", "chain"}
    assert all(micros > 0 for micros in results.values())


async def test_with_the_archive_module() -> None:
    results = await measure(count=20, repeat=1, mam=True)
    assert results["route"] > 0
