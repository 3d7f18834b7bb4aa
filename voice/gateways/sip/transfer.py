"""The call summary in the REFER that hands a call to a person: ``X-Call-Summary``.

The agent's phone or the PBX sees the summary as a short URL-encoded query
string (``intent=billing&account=...``) that fits any SIP proxy's header
limits. The full summary, as JSON, goes to the operator's webhook (see
``voice.gateways.webhook``) before the REFER, so it is there when the agent
picks up.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

SUMMARY_HEADER = "X-Call-Summary"
MAX_HEADER_BYTES = 700  # well under the 1-2 kB some proxies allow per header


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def _cut(text: str, room: int) -> str:
    """The longest prefix of ``text`` whose URL encoding fits ``room`` bytes."""
    out, used = [], 0
    for ch in text:
        size = len(quote(ch, safe=""))
        if used + size > room:
            break
        out.append(ch)
        used += size
    return "".join(out)


def summary_header(summary: dict[str, Any], limit: int = MAX_HEADER_BYTES) -> str:
    """``key=value&...`` URL-encoded; if too long, each field gets an equal share and long
    values are cut and marked with ``~``, so no field crowds out the others."""
    pairs = [(quote(str(k), safe=""), _flat(v)) for k, v in summary.items()
             if v not in (None, "", [], {})]
    full = "&".join(f"{k}={quote(t, safe='')}" for k, t in pairs)
    if len(full) <= limit or not pairs:
        return full
    share = limit // len(pairs) - 1
    out = []
    for key, text in pairs:
        room = share - len(key) - 1
        encoded = quote(text, safe="")
        if len(encoded) > room:
            encoded = quote(_cut(text, max(0, room - 3)), safe="") + "%7E"  # "~": cut here
        out.append(f"{key}={encoded}")
    return "&".join(out)
