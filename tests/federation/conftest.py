"""Fixtures shared by the federation tests."""

from ..transport.test_resolver import dns_server  # noqa: F401  (a real DNS server on loopback, for test_discovery)
