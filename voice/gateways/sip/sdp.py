"""SDP offer/answer (RFC 4566, RFC 3264) for one audio stream: G.711 and telephone-event.

The gateway only ever answers: it picks the first codec of the caller's offer
that it speaks (PCMU or PCMA, in the caller's order of preference) and accepts
RFC 4733 telephone-event at whatever payload type the caller chose for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.telephony import Law

# Static payload types of RFC 3551 that G.711 uses; the codec's name, as rtpmap spells it.
STATIC_CODECS: dict[int, str] = {0: "PCMU", 8: "PCMA"}
CODEC_LAW: dict[str, Law] = {"PCMU": "ulaw", "PCMA": "alaw"}
DEFAULT_DTMF_PT = 101


class SdpError(ValueError):
    """An offer the gateway cannot answer (no audio, no G.711): the reply is 488."""


@dataclass(frozen=True)
class MediaOffer:
    address: str  # where to send RTP
    port: int
    payload_types: list[int]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)  # pt -> (NAME, rate)
    direction: str = "sendrecv"

    def codec_name(self, pt: int) -> str:
        if pt in self.rtpmap:
            return self.rtpmap[pt][0].upper()
        return STATIC_CODECS.get(pt, "")


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed: one G.711 codec, and DTMF if the caller offered it."""

    address: str
    port: int
    codec_pt: int
    codec: str  # PCMU or PCMA
    dtmf_pt: int | None
    direction: str = "sendrecv"

    @property
    def law(self) -> Law:
        return CODEC_LAW[self.codec]


def parse_offer(body: bytes | str) -> MediaOffer:
    """The first active audio stream of an SDP body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    session_address = ""
    media: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        current = media[-1] if media else None
        if kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise SdpError(f"malformed SDP media line {line!r}")
            media.append({"kind": parts[0], "port": parts[1].split("/")[0], "proto": parts[2],
                          "fmts": parts[3:], "address": "", "rtpmap": {},
                          "direction": "sendrecv"})
        elif kind == "c":
            parts = value.split()
            if len(parts) >= 3:
                address = parts[2].split("/")[0]
                if current is None:
                    session_address = address
                else:
                    current["address"] = address
        elif kind == "a" and current is not None:
            name, _, rest = value.partition(":")
            if name == "rtpmap":
                pt, _, encoding = rest.partition(" ")
                codec, _, rate = encoding.partition("/")
                if pt.strip().isdigit():
                    rate_num = rate.split("/")[0]
                    current["rtpmap"][int(pt)] = (codec.strip(),
                                                  int(rate_num) if rate_num.isdigit() else 8000)
            elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                current["direction"] = name
    for m in media:
        if m["kind"] != "audio" or not m["port"].isdigit() or int(m["port"]) == 0:
            continue
        if "RTP/AVP" not in m["proto"].upper():
            continue
        address = m["address"] or session_address
        if not address:
            raise SdpError("SDP audio stream has no connection address (c=)")
        pts = [int(f) for f in m["fmts"] if f.isdigit()]
        return MediaOffer(address, int(m["port"]), pts, m["rtpmap"], m["direction"])
    raise SdpError("SDP offers no active RTP/AVP audio stream")


def negotiate(offer: MediaOffer) -> Negotiated:
    """Pick the caller's most preferred G.711 codec and its telephone-event type."""
    codec_pt = next((pt for pt in offer.payload_types
                     if offer.codec_name(pt) in CODEC_LAW
                     and offer.rtpmap.get(pt, ("", 8000))[1] == 8000), None)
    if codec_pt is None:
        names = [offer.codec_name(pt) or str(pt) for pt in offer.payload_types]
        raise SdpError(f"no common codec: offer has {', '.join(names)}; this gateway speaks "
                       f"PCMU and PCMA")
    dtmf_pt = next((pt for pt in offer.payload_types
                    if offer.codec_name(pt) == "TELEPHONE-EVENT"
                    and offer.rtpmap[pt][1] == 8000), None)
    reverse = {"sendonly": "recvonly", "recvonly": "sendonly"}
    return Negotiated(offer.address, offer.port, codec_pt, offer.codec_name(codec_pt), dtmf_pt,
                      reverse.get(offer.direction, offer.direction))


def build_sdp(address: str, port: int, codec_pt: int, codec: str, dtmf_pt: int | None,
              session_id: int, version: int = 1, direction: str = "sendrecv") -> bytes:
    """An SDP body for our side: one audio stream, ptime 20."""
    fmts = [str(codec_pt)] + ([str(dtmf_pt)] if dtmf_pt is not None else [])
    lines = [
        "v=0",
        f"o=voicedesk {session_id} {version} IN IP4 {address}",
        "s=voicedesk",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(fmts)}",
        f"a=rtpmap:{codec_pt} {codec}/8000",
    ]
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-16"]
    lines += ["a=ptime:20", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()
