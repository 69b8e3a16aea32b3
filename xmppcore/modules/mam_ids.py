"""XEP-0359: Unique and Stable Stanza IDs — the opaque archive ids the MAM module hands out.

The storage layer numbers archive rows from one counter shared by every account of the server,
so its ids would tell anyone who sees two of them how many messages the server archived in
between.  XEP-0359 §5 forbids exactly that ("Entities observing the value MUST NOT be able to
infer any information from it, e.g. the size of the message archive"), and XEP-0313 §3 asks for
UIDs that are "unpredictable and unique within the archive".

So the id a client sees is the storage id encrypted as one AES block under a per-host key:
a keyed permutation, hence still unique and stable (XEP-0359 §2.1), unpredictable without the key, and
turned back into the storage id without a lookup table.  The block carries a fixed tag, so an id
the server never issued (a typo, a guess, another server's id) decodes to None rather than to
some other message.  The key is 32 random bytes kept in the host's storage, so every node of a
cluster and every restart hands out the same ids.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from xmppcore.storage.api import KeyValueStore, StorageError

__all__ = ["ArchiveIds", "IdCodec"]

_TAG = b"xmppmam"           # 7 bytes; with the width byte and the 8-byte number, one AES block
_KEY_OWNER = ""            # the key is the host's, not an account's ("" is no localpart)
_ENCODED_LENGTH = 22       # base64url of 16 bytes, without padding


class IdCodec:
    """Storage ids (decimal strings, storage/api.py) to client-facing ids and back."""

    def __init__(self, key: bytes) -> None:
        cipher = Cipher(algorithms.AES(key), modes.ECB())  # one block per id: a permutation
        # ECB carries nothing from one block to the next, so one context serves every id (and
        # saves creating one per message: that cost more than the rest of the id's work).
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()

    def encode(self, storage_id: str) -> str:
        """The id a client sees for ``storage_id``."""
        if not (storage_id.isascii() and storage_id.isdigit() and len(storage_id) < 256):
            raise ValueError(f"not a storage archive id: {storage_id!r}")
        number = int(storage_id)
        if number >= 1 << 64:
            raise ValueError(f"storage archive id out of range: {storage_id!r}")
        block = _TAG + bytes([len(storage_id)]) + number.to_bytes(8, "big")
        sealed = self._encryptor.update(block)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def decode(self, client_id: str) -> str | None:
        """The storage id behind ``client_id``, or None when this host never issued it."""
        if len(client_id) != _ENCODED_LENGTH or not client_id.isascii():
            return None
        try:
            sealed = base64.urlsafe_b64decode(client_id + "==")
        except (binascii.Error, ValueError):
            return None
        if len(sealed) != 16:
            return None
        block = self._decryptor.update(sealed)
        if block[:7] != _TAG:
            return None
        width, number = block[7], int.from_bytes(block[8:], "big")
        text = str(number)
        return text.zfill(width) if len(text) <= width else None


class ArchiveIds:
    """The host's :class:`IdCodec`, its key read from (or first written to) ``store``."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store
        self._codec: IdCodec | None = None
        self._lock = asyncio.Lock()

    async def codec(self) -> IdCodec:
        """The codec; the first call reads the key, creating it on first use of the host."""
        if self._codec is not None:
            return self._codec
        async with self._lock:
            if self._codec is None:
                self._codec = IdCodec(await self._load_or_create_key())
        return self._codec

    async def _load_or_create_key(self) -> bytes:
        stored = await self._store.get(_KEY_OWNER)
        if stored is None:
            await self._store.set(_KEY_OWNER, secrets.token_hex(32))
            # Read it back: of two nodes racing to create it, the last write is the key.  (The
            # race needs two nodes archiving the host's very first message at once.)
            stored = await self._store.get(_KEY_OWNER)
        try:
            key = bytes.fromhex(stored) if isinstance(stored, str) else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            raise StorageError("the stored MAM id key is damaged")
        return key
