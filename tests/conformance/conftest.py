"""Fixtures for the conformance suite: each server is started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .targets import TargetPool


@pytest.fixture(scope="session")
def conformance_targets() -> Iterator[TargetPool]:
    """xmppcore and ejabberd, each started on first use and stopped at the end of the session."""
    pool = TargetPool()
    try:
        yield pool
    finally:
        pool.close()
