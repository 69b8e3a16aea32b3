"""XEP-0082: XMPP Date and Time Profiles — the UTC DateTime that stamps and clocks carry.

One formatter for every module that writes a time on the wire: XEP-0202 entity time,
XEP-0203 delay stamps on offline messages and on presence answered for offline contacts.
"""

from __future__ import annotations

import datetime

__all__ = ["utc_datetime"]


def utc_datetime(when: float, *, milliseconds: bool = True) -> str:
    """``when`` (Unix time) as ``CCYY-MM-DDThh:mm:ss[.sss]Z`` (XEP-0082 §3.3), truncated."""
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if milliseconds:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"
