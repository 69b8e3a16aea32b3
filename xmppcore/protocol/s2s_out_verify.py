"""XEP-0220 §2.1.2–§2.1.3: the verification requests an outgoing server-to-server stream carries.

When ``remote`` offers a dialback key on one of our incoming streams, we ask ``remote`` itself,
as the authoritative server, whether the key is its own: a ``<db:verify/>`` on our outgoing
stream to it.  This is the bookkeeping of those questions for :class:`.s2s_out.S2SOutgoing`,
sans I/O: queued until the stream allows them, matched to their answers, failed with
``valid=None`` when they cannot be asked or the stream ends, and bounded in number (a stranger
opens the incoming streams that cause them).  Each call says what to send and what is settled.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..xml.element import Element
from . import events as ev
from .dialback import verify_element

__all__ = ["MAX_PENDING_VERIFICATIONS", "VerificationRequests", "VerificationUpdate"]

MAX_PENDING_VERIFICATIONS = 256  # <db:verify/> questions queued or unanswered on one stream


@dataclass(frozen=True, slots=True)
class VerificationUpdate:
    """What the stream does after a call: ``<db:verify/>`` elements to send now, in order, and
    the ``DialbackVerifyResult`` events of the questions settled now."""

    to_send: tuple[Element, ...] = ()
    results: tuple[ev.DialbackVerifyResult, ...] = ()


class VerificationRequests:
    """The ``<db:verify/>`` questions of one stream ``local`` -> ``remote``.

    Their outcomes are about ``remote``'s keys for traffic ``remote`` -> ``local``
    (originating ``remote``, receiving ``local``).
    """

    def __init__(self, *, local: str, remote: str) -> None:
        self.local = local
        self.remote = remote
        self._allowed = False                     # the stream may carry <db:verify/> now
        self._peer_dialback = False               # and the peer answers it (as of allow())
        self._queued: list[tuple[str, str]] = []  # (stream id, key) not sent yet
        self._asked: list[str] = []               # stream ids of <db:verify/> awaiting an answer

    @property
    def awaiting_answers(self) -> bool:
        """Whether questions have been sent and not all of them answered."""
        return bool(self._asked)

    def request(self, *, stream_id: str, key: str) -> VerificationUpdate:
        """Ask whether ``key`` is ``remote``'s key on our incoming stream ``stream_id``: sent at
        once if the stream allows, else queued; refused at once beyond the cap."""
        if len(self._queued) + len(self._asked) >= MAX_PENDING_VERIFICATIONS:
            return VerificationUpdate(results=(self._result(stream_id, None),))
        self._queued.append((stream_id, key))
        return self._release()

    def allow(self, *, peer_dialback: bool) -> VerificationUpdate:
        """The stream may carry ``<db:verify/>`` from now on: past TLS and SASL, as a stream
        restart would lose the answers.  Without ``peer_dialback`` no question can be answered:
        they all fail."""
        self._allowed, self._peer_dialback = True, peer_dialback
        return self._release()

    def answer(self, element: Element, kind: str) -> VerificationUpdate:
        """The peer's ``<db:verify type=kind/>``: the result it settles, if it answers one of ours."""
        stream_id = element.get("id") or ""
        if (element.get("from") != self.remote or element.get("to") != self.local
                or stream_id not in self._asked):
            return VerificationUpdate()  # XEP-0220 §3.1: an unsolicited answer is dropped
        self._asked.remove(stream_id)
        # XEP-0220 §2.1.3: 'valid' or 'invalid'; a dialback error (§2.5) settles it as None.
        return VerificationUpdate(results=(self._result(stream_id, {"valid": True, "invalid": False}.get(kind)),))

    def fail_all(self) -> VerificationUpdate:
        """The stream ends: every question not answered yet, asked or queued, has failed."""
        # XEP-0220 §2.1.2: requests pending when the stream ends count as failed.
        pending = self._asked + [stream_id for stream_id, _ in self._queued]
        self._asked, self._queued = [], []
        return VerificationUpdate(results=tuple(self._result(stream_id, None) for stream_id in pending))

    def _release(self) -> VerificationUpdate:
        if not self._allowed:
            return VerificationUpdate()
        queued, self._queued = self._queued, []
        if not self._peer_dialback:
            return VerificationUpdate(results=tuple(self._result(stream_id, None) for stream_id, _ in queued))
        self._asked += [stream_id for stream_id, _ in queued]
        return VerificationUpdate(to_send=tuple(
            verify_element(from_=self.local, to=self.remote, stream_id=stream_id, key=key)
            for stream_id, key in queued))

    def _result(self, stream_id: str, valid: bool | None) -> ev.DialbackVerifyResult:
        return ev.DialbackVerifyResult(
            originating=self.remote, receiving=self.local, stream_id=stream_id, valid=valid)
