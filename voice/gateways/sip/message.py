"""SIP messages (RFC 3261): parsing that survives the RFC 4475 torture tests, and serialising.

A gateway on a public trunk receives whatever the network sends. The parser is
liberal where RFC 3261 is (line folding, compact header names, any case, LWS
around separators, unknown headers and parameters, UTF-8 in reason phrases)
and strict where a wrong guess would be dangerous (Content-Length, CSeq,
request-line shape, name-addr syntax, empty Via parameters). A message that
fails raises ``SipSyntaxError`` carrying what was parsed, so the gateway can
still answer ``400`` (or ``505``) to the sender with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# RFC 3261 7.3.3 compact forms, plus those of the REFER and events RFCs.
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "r": "Refer-To", "b": "Referred-By", "o": "Event", "u": "Allow-Events",
    "x": "Session-Expires",
}
_CANONICAL = {name.lower(): name for name in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
    "Content-Type", "Route", "Record-Route", "Allow", "Supported", "Require", "Expires",
    "User-Agent", "Server", "Refer-To", "Referred-By", "Event", "Subscription-State",
    "WWW-Authenticate", "Authorization", "Proxy-Authenticate", "Proxy-Authorization",
    "Accept", "Subject", "Warning", "Reason", "Min-Expires", "Allow-Events", "Date")}
# Headers whose values are comma-separated lists (RFC 3261 7.3.1): split on get_all.
_LIST_HEADERS = frozenset({"via", "contact", "route", "record-route", "allow", "supported",
                           "require", "accept"})
_SINGLETONS = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = re.compile(rf"[{TOKEN_CHARS}]+\Z")
_REQUEST_LINE = re.compile(rf"([{TOKEN_CHARS}]+) (\S+) (SIP/\d+\.\d+)\Z")
_STATUS_LINE = re.compile(r"SIP/(\d+\.\d+) (\d+) ?(.*)\Z", re.S)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"]+\Z")
_VIA = re.compile(r"SIP\s*/\s*([^\s/]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^\s;:]+|\[[^\]]+\])"
                  r"(?:\s*:\s*(\d+))?\s*(.*)\Z", re.S)
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5: the sequence number is below 2**31
MAX_DELTA = 2**32 - 1  # delta-seconds (Expires)


class SipSyntaxError(ValueError):
    """A message that cannot be processed; ``message`` is what could be read, for a reply."""

    def __init__(self, reason: str, message: SipMessage | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.status = status


def canonical(name: str) -> str:
    name = name.strip()
    lowered = name.lower()
    if lowered in COMPACT:
        return COMPACT[lowered]
    return _CANONICAL.get(lowered, name)


def split_list(value: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside quoted strings and angle brackets."""
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == separator and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return parts


@dataclass
class SipMessage:
    """One request (``method`` set) or response (``status`` set); headers keep their order."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str, default: str = "") -> str:
        wanted = canonical(name).lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, list headers split into their elements."""
        wanted = canonical(name).lower()
        values = [value for key, value in self.headers if key.lower() == wanted]
        if wanted in _LIST_HEADERS:
            return [part for value in values for part in split_list(value)]
        return values

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header by one with ``value``."""
        key = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k.lower() != key.lower()]
        self.headers.append((key, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    @property
    def call_id(self) -> str:
        return self.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.get("CSeq").partition(" ")
        return int(number), method.strip()

    @property
    def from_tag(self) -> str:
        return header_param(self.get("From"), "tag")

    @property
    def to_tag(self) -> str:
        return header_param(self.get("To"), "tag")

    @property
    def branch(self) -> str:
        vias = self.get_all("Via")
        return header_param(vias[0], "branch") if vias else ""

    def encode(self) -> bytes:
        """The wire form; Content-Length always matches the body."""
        if self.method:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        lines = [start]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body

    def summary(self) -> str:
        """One line for logs: what the message is and which call."""
        what = f"{self.method} {self.uri}" if self.method else f"{self.status} {self.reason}"
        return f"{what} (Call-ID {self.call_id or '?'}, CSeq {self.get('CSeq') or '?'})"


def header_param(value: str, name: str) -> str:
    """A header parameter (``tag``, ``branch``, ``expires``) after the URI, or ""."""
    params = _params_after_uri(value)
    return params.get(name.lower(), "")


def _params_after_uri(value: str) -> dict[str, str]:
    gt = _closing_angle(value)
    rest = value[gt + 1:] if gt >= 0 else value
    if gt < 0:
        # addr-spec form: parameters after the first ';' belong to the header
        semi = rest.find(";")
        rest = rest[semi:] if semi >= 0 else ""
    out: dict[str, str] = {}
    for part in split_list(rest, ";")[1:]:
        key, _, val = part.partition("=")
        out[key.strip().lower()] = val.strip().strip('"')
    return out


def _closing_angle(value: str) -> int:
    quoted = escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            escaped = ch == "\\"
            quoted = ch != '"' or escaped
        elif ch == '"':
            quoted = True
        elif ch == ">":
            return i
    return -1


@dataclass(frozen=True)
class NameAddr:
    display: str
    uri: str
    params: dict[str, str]


def parse_name_addr(value: str, where: str = "header") -> NameAddr:
    """``"Display" <uri>;params``, ``token token <uri>``, or a bare addr-spec with params."""
    text = value.strip()
    display = ""
    if "<" in text or text.startswith('"'):
        i = 0
        if text.startswith('"'):
            i = 1
            escaped = False
            while i < len(text):
                ch = text[i]
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    break
                i += 1
            else:
                raise SipSyntaxError(f"{where} {value!r} has an unterminated quoted display name")
            display = text[1:i]
            i += 1
            rest = text[i:].lstrip()
        else:
            lt = text.find("<")
            display = text[:lt].strip()
            if display and not all(_TOKEN.match(word) for word in display.split()):
                raise SipSyntaxError(f"{where} {value!r}: display name {display!r} must be "
                                     f"quoted (it has characters outside token)")
            rest = text[lt:]
        if not rest.startswith("<"):
            raise SipSyntaxError(f"{where} {value!r}: expected <uri> after the display name")
        gt = rest.find(">")
        if gt < 0:
            raise SipSyntaxError(f"{where} {value!r} has no closing '>'")
        uri = rest[1:gt]
        if not _URI.match(uri):
            raise SipSyntaxError(f"{where} {value!r}: {uri!r} is not a URI (no spaces inside <>)")
        params = _parse_params(rest[gt + 1:], where, value)
        return NameAddr(display, uri, params)
    uri, _, rest = text.partition(";")
    uri = uri.strip()
    if not _URI.match(uri):
        raise SipSyntaxError(f"{where} {value!r}: {uri!r} is not a URI")
    if "?" in uri:
        raise SipSyntaxError(f"{where} {value!r}: a URI with headers (?) must be enclosed in <>")
    return NameAddr("", uri, _parse_params(";" + rest if rest else "", where, value))


def _parse_params(text: str, where: str, value: str) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    if not text.startswith(";"):
        raise SipSyntaxError(f"{where} {value!r}: unexpected {text!r} after the address")
    out: dict[str, str] = {}
    for part in split_list(text[1:], ";"):
        key, eq, val = part.partition("=")
        key, val = key.strip(), val.strip()
        if not key or not _TOKEN.match(key) or (eq and not val):
            raise SipSyntaxError(f"{where} {value!r} has an empty or malformed parameter "
                                 f"{part!r}")
        out[key.lower()] = val.strip('"') if val.startswith('"') else val
    return out


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]


def parse_via(value: str) -> Via:
    match = _VIA.match(value.strip())
    if not match:
        raise SipSyntaxError(f"Via {value!r} is not 'SIP/2.0/transport host[:port];params'")
    version, transport, host, port, rest = match.groups()
    if version != "2.0":
        raise SipSyntaxError(f"Via {value!r} names SIP version {version}", status=505)
    params = _parse_params(rest, "Via", value)
    return Via(transport.upper(), host, int(port) if port else None, params)


def _unfold(head: str) -> list[str]:
    lines: list[str] = []
    for line in re.split(r"\r\n|\n|\r", head):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
        else:
            lines.append(line)
    return lines


def parse(data: bytes) -> SipMessage:
    """One datagram into a message, or ``SipSyntaxError`` saying what was wrong."""
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: ignore CRLFs before the start line
    for sep in (b"\r\n\r\n", b"\n\n"):
        cut = data.find(sep)
        if cut >= 0:
            head_bytes, body = data[:cut], data[cut + len(sep):]
            break
    else:
        head_bytes, body = data, b""
    head = head_bytes.decode("utf-8", "surrogateescape")
    lines = _unfold(head)
    if not lines or not lines[0]:
        raise SipSyntaxError("empty message")
    message = SipMessage()
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            raise SipSyntaxError(f"header line {line[:60]!r} is not 'Name: value'", message)
        message.headers.append((canonical(name), value.strip()))
    start = lines[0]
    status_match = _STATUS_LINE.match(start)
    if status_match:
        version, code, reason = status_match.groups()
        if len(code) != 3 or not 100 <= int(code) <= 699:
            raise SipSyntaxError(f"status code {code[:20]} is not 100-699", message)
        message.status, message.reason = int(code), reason
        if version != "2.0":
            raise SipSyntaxError(f"response version SIP/{version} is not SIP/2.0", message, 505)
    else:
        request_match = _REQUEST_LINE.match(start)
        if not request_match:
            message.method = start.split(" ", 1)[0] if _TOKEN.match(start.split(" ", 1)[0]) \
                else "UNKNOWN"
            raise SipSyntaxError(f"request line {start[:80]!r} is not 'METHOD SP URI SP "
                                 f"SIP/2.0' (single spaces, no spaces in the URI)", message)
        message.method, message.uri, version = request_match.groups()
        if version != "SIP/2.0":
            raise SipSyntaxError(f"{version} is not supported; this server speaks SIP/2.0",
                                 message, 505)
        _check_request_uri(message)
    try:
        _check_headers(message)
    except SipSyntaxError as error:
        error.message = error.message or message
        raise
    message.body = _body(message, body)
    return message


def _check_request_uri(message: SipMessage) -> None:
    uri = message.uri
    if not _URI.match(uri):
        raise SipSyntaxError(f"Request-URI {uri[:80]!r} is not a URI", message, 400)
    if uri.lower().startswith(("sip:", "sips:")) and "?" in uri[uri.rfind("@") + 1:]:
        raise SipSyntaxError(f"Request-URI {uri[:80]!r} carries headers (?...), which a "
                             f"Request-URI may not", message)


def _body(message: SipMessage, body: bytes) -> bytes:
    lengths = {v.strip() for k, v in message.headers if k == "Content-Length"}
    if not lengths:
        return body  # over UDP the datagram ends the body
    if len(lengths) > 1:
        raise SipSyntaxError(f"conflicting Content-Length values {sorted(lengths)}", message)
    text = lengths.pop()
    if not text.isdigit():
        raise SipSyntaxError(f"Content-Length {text[:20]!r} is not a non-negative integer",
                             message)
    length = int(text)
    if length > len(body):
        raise SipSyntaxError(f"Content-Length {length} exceeds the {len(body)} body bytes "
                             f"received", message)
    return body[:length]


def _check_headers(message: SipMessage) -> None:
    for name in _SINGLETONS:
        if len(message.get_all(name)) > 1:
            raise SipSyntaxError(f"{len(message.get_all(name))} {name} headers; exactly one "
                                 f"is allowed", message)
    required = ("Via", "From", "To", "Call-ID", "CSeq")
    missing = [name for name in required if not message.get(name)]
    if missing:
        raise SipSyntaxError(f"missing mandatory header(s) {', '.join(missing)}", message)
    cseq = re.fullmatch(rf"(\d+)\s+([{TOKEN_CHARS}]+)", message.get("CSeq"))
    if not cseq:
        raise SipSyntaxError(f"CSeq {message.get('CSeq')[:40]!r} is not 'number METHOD'",
                             message)
    number, method = cseq.groups()
    if int(number) > MAX_CSEQ:
        raise SipSyntaxError(f"CSeq number {number} is above 2**31-1", message)
    message.set("CSeq", f"{int(number)} {method}")
    if message.is_request and method != message.method:
        raise SipSyntaxError(f"CSeq method {method} does not match request method "
                             f"{message.method}", message)
    max_forwards = message.get("Max-Forwards")
    if max_forwards and (not max_forwards.isdigit() or int(max_forwards) > 255):
        raise SipSyntaxError(f"Max-Forwards {max_forwards[:20]!r} is not 0-255", message)
    expires = message.get("Expires")
    if expires and (not expires.isdigit() or int(expires) > MAX_DELTA):
        raise SipSyntaxError(f"Expires {expires[:20]!r} is not 0-{MAX_DELTA} seconds", message)
    for via in message.get_all("Via"):
        parse_via(via)  # raises on a malformed Via
    for name in ("From", "To"):
        parse_name_addr(message.get(name), name)
    for contact in message.get_all("Contact"):
        if contact != "*":
            parse_name_addr(contact, "Contact")


def response(request: SipMessage, status: int, reason: str, to_tag: str = "",
             headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
    """A response to ``request`` (RFC 3261 8.2.6): its Via, From, To, Call-ID, CSeq copied."""
    out = SipMessage(status=status, reason=reason)
    out.headers = [("Via", value) for key, value in request.headers if key == "Via"]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(name)
        if name == "To" and to_tag and status > 100 and not request.to_tag and value:
            value = f"{value};tag={to_tag}"
        if value:
            out.headers.append((name, value))
    if 180 <= status < 300:
        out.headers += [("Record-Route", v) for k, v in request.headers if k == "Record-Route"]
    for key, value in headers or []:
        out.add(key, value)
    out.body = body
    return out
