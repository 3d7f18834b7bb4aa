"""The call summary for the agent, POSTed as JSON to ``[telephony] summary_webhook``.

AudioSocket and WebSocket media streams cannot transfer a call themselves:
voicedesk ends its media leg and the PBX (dialplan) or TwiML decides what
happens next. The summary therefore travels out of band, to a URL the
operator's agent desktop or routing logic listens on, keyed by the call id the
PBX already knows (AudioSocket UUID, Twilio callSid/streamSid). It is sent
before the line is handed back, so the receiver knows about the transfer by the
time the PBX asks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from voice.transport import CallInfo

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0


def transfer_payload(info: CallInfo, target: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {"event": "transfer", "call_id": info.call_id, "channel": info.channel,
            "caller_id": info.caller_id, "target": target, "summary": summary,
            "metadata": info.metadata}


async def post_summary(url: str, payload: dict[str, Any], timeout: float = TIMEOUT_S) -> bool:
    """POST ``payload`` as JSON; True on a 2xx answer. Failures are logged, never raised."""
    if not url:
        return False
    body = json.dumps(payload, default=str).encode()

    def send() -> int:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)

    try:
        status = await asyncio.to_thread(send)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.error("summary webhook %s failed for call %s: %s", url, payload.get("call_id"), exc)
        return False
    if not 200 <= status < 300:
        log.error("summary webhook %s answered HTTP %d for call %s", url, status,
                  payload.get("call_id"))
        return False
    return True
