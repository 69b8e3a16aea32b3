"""xmppcore/unpredictable.py: tokens from OS randomness read in blocks, each byte used once."""

from __future__ import annotations

import os

from xmppcore import unpredictable


def test_tokens_have_the_asked_size_and_never_repeat() -> None:
    hexes = [unpredictable.token_hex(4) for _ in range(5000)]  # crosses several blocks
    assert all(len(t) == 8 and int(t, 16) >= 0 for t in hexes)
    urls = [unpredictable.token_urlsafe(12) for _ in range(2000)]
    assert all(len(t) == 16 and "=" not in t for t in urls)
    assert len(set(urls)) == len(urls)
    assert len(unpredictable.token_hex(10_000)) == 20_000  # larger than a block


def test_a_forked_child_does_not_reuse_its_parents_bytes() -> None:
    unpredictable.token_hex(1)  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next token, then leave at once
        os.write(write, unpredictable.token_hex(16).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert child != unpredictable.token_hex(16)
