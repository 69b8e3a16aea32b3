"""Unpredictable tokens: stream ids (RFC 6120 §4.7.3), SCRAM nonces (RFC 5802 §5.1), session tags.

``secrets`` asks the operating system for every token, one system call each, and a login needs
five of them (two stream ids, a nonce, a session tag, perhaps a resource): a few percent of a busy
server's time (docs/performance.md).  Here the bytes come from ``os.urandom`` a block at a time and
each byte is handed out once, so the tokens are exactly as unpredictable.  A forked child starts
with an empty block: it must not hand out its parent's bytes.  For the event loop's thread.
"""

from __future__ import annotations

import base64
import os

__all__ = ["token_hex", "token_urlsafe"]

_BLOCK = 4096
_pool = b""
_used = 0


def _bytes(count: int) -> bytes:
    global _pool, _used
    if _used + count > len(_pool):
        _pool, _used = os.urandom(max(_BLOCK, count)), 0
    start, _used = _used, _used + count
    return _pool[start:_used]


def _forget_after_fork() -> None:
    global _pool, _used
    _pool, _used = b"", 0


os.register_at_fork(after_in_child=_forget_after_fork)


def token_hex(count: int) -> str:
    """``count`` unpredictable bytes as hexadecimal text (like ``secrets.token_hex``)."""
    return _bytes(count).hex()


def token_urlsafe(count: int) -> str:
    """``count`` unpredictable bytes as URL-safe base64 without padding (like ``secrets.token_urlsafe``)."""
    return base64.urlsafe_b64encode(_bytes(count)).rstrip(b"=").decode("ascii")
