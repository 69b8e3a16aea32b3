"""XEP-0198: Stream Management — acknowledgements and resumption for client streams, sans I/O.

Two pieces, because a resumed session outlives the stream it started on:

- :class:`SmSession` is the "stream management session" of the XEP: both 'h' counters and the
  queue of stanzas the client has not acknowledged yet.  The runtime keeps it while a session
  waits, detached, for the client to resume it, and hands it to the new stream's core.
- :class:`SmServerStream` is the server's side of XEP-0198 on one stream: the feature, the
  ``<enable/>``, ``<r/>`` and ``<a/>`` elements, the requests we send and when.  The c2s core
  (``protocol/c2s.py``) owns one and does the negotiation states (``<resume/>`` instead of bind).

Durable acknowledgement (the XEP's definition of "handled", §4): the count we acknowledge only
covers stanzas the runtime has told us it routed — delivered to a session or committed to
storage — through ``stanza_handled()``, once per ``StanzaReceived`` and in order.  An ``<r/>``
that arrives while stanzas before it are still being routed is answered the moment they are;
§4 lets the answer wait for nothing else.  Stanzas the core answers itself (the legacy
``<session/>``, a second bind) count as handled once everything before them is.

The 'h' values wrap from 2^32-1 to 0 (§4); differences are taken modulo 2^32, which is exact
as long as fewer than 2^32 stanzas are unacknowledged (``max_unacked`` is far below that).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..stanza.errors import Condition, StreamCondition, StreamError
from ..xml.element import Element
from ..xml.namespaces import NS_STANZA_ERRORS
from .events import ResumeRequested, StreamManagementEnabled

__all__ = [
    "H_MODULUS",
    "NS_SM",
    "HandledCountTooHigh",
    "SmPolicy",
    "SmServerStream",
    "SmSession",
    "failed_element",
    "parse_h",
]

NS_SM = "urn:xmpp:sm:3"
H_MODULUS = 1 << 32  # §4: 'h' is an xs:unsignedInt and wraps to zero


@dataclass(frozen=True, slots=True)
class SmPolicy:
    """What the server allows: resumption time, queue bound and how often it asks for acks."""

    resume_timeout: int = 300        # seconds a detached session waits when the client names no 'max'; 0: no resumption
    max_resume_timeout: int = 3600   # the most a client's 'max' can get
    max_unacked: int = 1000          # stanzas the client may leave unacknowledged before its stream ends
    request_every: int = 5           # we send <r/> after this many stanzas since the last request...
    request_interval: float = 30.0   # ...or this many seconds after a stanza while some are unacknowledged

    def timeout_for(self, requested: str | None) -> int:
        """The resumption time to grant for the client's 'max' (a positive integer, or absent)."""
        if self.resume_timeout <= 0:
            return 0
        if requested is not None and requested.isascii() and requested.isdigit() and int(requested) > 0:
            return min(int(requested), self.max_resume_timeout)
        return min(self.resume_timeout, self.max_resume_timeout)


_NOT_OFFERED = SmPolicy()  # what a stream without XEP-0198 consults (it never enables anything)


class HandledCountTooHigh(StreamError):
    """The client acknowledged stanzas we never sent (XEP-0198 §6): ``undefined-condition``
    with the application-specific ``<handled-count-too-high/>``."""

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(StreamCondition.UNDEFINED_CONDITION,
                         f"you acknowledged {h} stanzas, we sent {send_count}")
        self.h = h
        self.send_count = send_count

    def to_element(self) -> Element:
        err = super().to_element()
        err.add("handled-count-too-high", NS_SM, {"h": str(self.h), "send-count": str(self.send_count)})
        return err


def parse_h(value: str | None) -> int | None:
    """An 'h' attribute as an int from 0 to 2^32-1, or None when absent or malformed."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if number < H_MODULUS else None


def failed_element(condition: Condition, h: int | None = None) -> Element:
    """``<failed/>`` with a stanza error condition (§6), and 'h' when known (§5)."""
    failed = Element("failed", NS_SM, {"h": str(h)} if h is not None else {})
    failed.add(condition.value, NS_STANZA_ERRORS)
    return failed


class SmSession:
    """Both counters and the unacknowledged queue of one stream management session."""

    def __init__(self, *, sm_id: str | None = None, resume_timeout: int = 0, max_unacked: int = 1000,
                 handled: int = 0, acked: int = 0, unrouted: int = 0) -> None:
        """``handled``/``acked`` are the counts to start from (zero when enabled); ``unrouted``
        stanzas received before enabling are still being routed and do not count."""
        self.id = sm_id
        self.resume_timeout = resume_timeout   # 0: the session cannot be resumed
        self.max_unacked = max_unacked
        # inbound: what the client sent us
        self._handled = handled % H_MODULUS
        self._received = self._handled
        self._weights: deque[int] = deque([0] * unrouted)  # per stanza being routed: what it completes
        self._requests: deque[int] = deque()               # received counts that pending <r/>s wait for
        # outbound: what we sent the client
        self._acked = acked % H_MODULUS
        self._queue: deque[Element] = deque()
        self._transmitted = 0  # how many at the front of the queue went out on a stream

    # -- inbound ----------------------------------------------------------------------------------
    @property
    def inbound_h(self) -> int:
        """Stanzas from the client handled so far, modulo 2^32."""
        return self._handled % H_MODULUS

    def stanza_received(self) -> None:
        """A stanza went to the runtime to be routed."""
        self._received += 1
        self._weights.append(1)

    def stanza_handled_here(self) -> None:
        """The core answered a stanza itself; it counts once the stanzas before it are routed."""
        self._received += 1
        if self._weights:
            self._weights[-1] += 1
        else:
            self._handled += 1

    def stanza_handled(self) -> list[int]:
        """The runtime routed the oldest stanza; the 'h' values for the requests now answered."""
        if self._weights:
            self._handled += self._weights.popleft()
        answers: list[int] = []
        while self._requests and self._requests[0] <= self._handled:
            self._requests.popleft()
            answers.append(self.inbound_h)
        return answers

    def request(self) -> list[int]:
        """The client sent ``<r/>``: answer now when nothing is being routed, else later."""
        if not self._weights:
            return [self.inbound_h]
        if not self._requests or self._requests[-1] != self._received:
            self._requests.append(self._received)  # one answer serves back-to-back requests
        return []

    def drop_requests(self) -> None:
        """Requests made on a stream that is gone are not answered on the next one."""
        self._requests.clear()

    # -- outbound ---------------------------------------------------------------------------------
    @property
    def unacked(self) -> int:
        return len(self._queue)

    @property
    def overflowing(self) -> bool:
        return len(self._queue) > self.max_unacked

    @property
    def send_count(self) -> int:
        """Stanzas sent to the client so far, modulo 2^32."""
        return (self._acked + self._transmitted) % H_MODULUS

    def track(self, stanza: Element, *, transmitted: bool) -> None:
        """Keep ``stanza`` until acknowledged; ``transmitted=False`` while no stream carries it."""
        assert not transmitted or self._transmitted == len(self._queue), "held stanzas go out first"
        self._queue.append(stanza)
        if transmitted:
            self._transmitted += 1

    def acknowledge(self, h: int) -> None:
        """The client handled our stanzas up to ``h``; HandledCountTooHigh beyond what we sent."""
        count = (h - self._acked) % H_MODULUS
        if count > self._transmitted:
            raise HandledCountTooHigh(h, self.send_count)
        for _ in range(count):
            self._queue.popleft()
        self._transmitted -= count
        self._acked = h % H_MODULUS

    def retransmit(self) -> list[Element]:
        """Everything still unacknowledged, oldest first, now counted as sent (§5 resumption)."""
        self._transmitted = len(self._queue)
        return list(self._queue)

    def take_unacknowledged(self) -> list[Element]:
        """Empty the queue for good (the session ends); the stanzas need another way (§4)."""
        taken = list(self._queue)
        self._acked = (self._acked + len(taken)) % H_MODULUS
        self._queue.clear()
        self._transmitted = 0
        return taken


class SmServerStream:
    """XEP-0198 on one client stream: the elements after binding, our requests, the timer.

    With ``policy=None`` stream management is not offered and every method does nothing.
    """

    __slots__ = ("policy", "offered", "session", "_new_id", "_send", "_unrouted", "_since_request",
                 "_request_at", "_resume_h", "clock")

    def __init__(self, policy: SmPolicy | None, *, new_id: Callable[[], str], send: Callable[[Element], None]) -> None:
        self.policy = policy if policy is not None else _NOT_OFFERED
        self.offered = policy is not None
        self.session: SmSession | None = None
        self._new_id = new_id
        self._send = send
        self._unrouted = 0      # stanzas being routed that were received before enabling
        self._since_request = 0
        self._request_at: float | None = None
        self._resume_h = 0      # the client's 'h' in its <resume/>
        self.clock = 0.0        # the latest time the core was told (input or timer)

    def features(self) -> list[Element]:
        """§2: offered with the features after authentication."""
        return [Element("sm", NS_SM)] if self.offered else []

    # -- elements from the client once authenticated --------------------------------------------
    def on_element(self, element: Element, *, bound: bool) -> StreamManagementEnabled | ResumeRequested | None:
        """An element of our namespace after authentication, before (``bound=False``) or after
        binding; returns the event the core passes on."""
        name = element.name
        if name == "enable" and bound:
            session = self._enable(element)
            return StreamManagementEnabled(sm_id=session.id, resume_timeout=session.resume_timeout)
        if name == "enable" or (name == "resume" and bound):
            # §3: "The server SHALL enforce this order" (enable after binding); §5: resuming takes
            # the place of binding, so a bound stream cannot resume another session.
            self._send(failed_element(Condition.UNEXPECTED_REQUEST))
            return None
        if name == "resume":
            return self._resume_request(element)
        if not bound or name not in ("r", "a"):
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"<{name}/> is not expected here")
        self._ack_element(element)
        return None

    def _enable(self, element: Element) -> SmSession:
        """``<enable/>`` (§3): answer ``<enabled/>`` and start counting from zero."""
        if self.session is not None:
            # §3: "a client SHALL only make at most one attempt"; a second one ends the stream.
            raise StreamError(StreamCondition.POLICY_VIOLATION, "stream management is already enabled")
        wants_resume = element.get("resume") in ("true", "1")
        timeout = self.policy.timeout_for(element.get("max")) if wants_resume else 0
        session = SmSession(sm_id=self._new_id() if timeout else None, resume_timeout=timeout,
                            max_unacked=self.policy.max_unacked, unrouted=self._unrouted)
        self._unrouted = 0
        self.session = session
        attrs = {"id": session.id, "resume": "true", "max": str(timeout)} if session.id else {}
        self._send(Element("enabled", NS_SM, attrs))
        return session

    def _resume_request(self, element: Element) -> ResumeRequested | None:
        previd, h = element.get("previd") or "", parse_h(element.get("h"))
        if not self.policy.resume_timeout:
            self._send(failed_element(Condition.FEATURE_NOT_IMPLEMENTED))  # §5: no resumption here
        elif not previd or h is None:
            self._send(failed_element(Condition.BAD_REQUEST))  # §5: both are REQUIRED
        else:
            self._resume_h = h
            return ResumeRequested(previd=previd, h=h)
        return None

    def _ack_element(self, element: Element) -> None:
        """``<r/>`` or ``<a/>`` once enabled (§4)."""
        session = self.session
        if session is None:
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, "stream management is not enabled")
        if element.name == "r":
            self._answer(session.request())
            return
        h = parse_h(element.get("h"))
        if h is None:
            raise StreamError(StreamCondition.INVALID_XML, "<a/> needs an 'h' from 0 to 2^32-1")
        session.acknowledge(h)
        if not session.unacked:
            self._request_at = None

    def resume(self, session: SmSession) -> None:
        """§5: ``<resumed/>``, then continue ``session`` on this stream, resending what the
        client's 'h' does not cover (HandledCountTooHigh when it covers more than was sent)."""
        assert session.id is not None, "only a resumable session can be resumed"
        self._send(Element("resumed", NS_SM, {"previd": session.id, "h": str(session.inbound_h)}))
        self.session = session
        session.drop_requests()
        session.acknowledge(self._resume_h)
        stanzas = session.retransmit()
        for stanza in stanzas:
            self._send(stanza)
        self._after_sending(len(stanzas))

    # -- stanzas both ways ----------------------------------------------------------------------
    def stanza_received(self) -> None:
        if self.session is not None:
            self.session.stanza_received()
        else:
            self._unrouted += 1

    def stanza_handled_here(self) -> None:
        if self.session is not None:
            self.session.stanza_handled_here()

    def stanza_handled(self, *, stream_open: bool) -> None:
        if self.session is None:
            self._unrouted = max(0, self._unrouted - 1)
            return
        answers = self.session.stanza_handled()
        if stream_open:
            self._answer(answers)

    def outbound(self, stanza: Element, *, stream_open: bool) -> bool:
        """Track a stanza for the client; False when SM is off (the caller sends it as before)."""
        session = self.session
        if session is None:
            return False
        session.track(stanza, transmitted=stream_open)
        if stream_open:
            self._send(stanza)
            self._after_sending(1)
        return True

    @property
    def overflowing(self) -> bool:
        """More stanzas unacknowledged than the policy allows."""
        return self.session is not None and self.session.overflowing

    def _after_sending(self, count: int) -> None:
        if count <= 0:
            return
        self._since_request += count
        if self._since_request >= self.policy.request_every:
            self._request()
        elif self._request_at is None:
            self._request_at = self.clock + self.policy.request_interval

    def _request(self) -> None:
        self._since_request = 0
        self._send(Element("r", NS_SM))
        self._request_at = self.clock + self.policy.request_interval

    def _answer(self, answers: list[int]) -> None:
        for h in answers:
            self._send(Element("a", NS_SM, {"h": str(h)}))

    # -- timer ------------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        return self._request_at if self.session is not None else None

    def handle_timer(self, now: float) -> None:
        self.clock = now
        if self._request_at is None or now < self._request_at:
            return
        if self.session is not None and self.session.unacked:
            self._request()
        else:
            self._request_at = None
