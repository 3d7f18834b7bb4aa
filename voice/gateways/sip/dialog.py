"""A SIP dialog (RFC 3261 12): the identifiers that tie a call's later requests together.

Built from the caller's INVITE on our side (UAS): our tag goes on To, theirs
is on From; the caller's Contact is where in-dialog requests (BYE, REFER)
go, through the Record-Route set. Over UDP they are sent to the address the
INVITE came from, which is also what works behind a NAT.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import unquote

from voice.gateways.sip.message import SipMessage, parse_name_addr, split_list

BRANCH_COOKIE = "z9hG4bK"  # RFC 3261 8.1.1.7: marks an RFC 3261 branch


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return BRANCH_COOKIE + secrets.token_hex(8)


def uri_user(uri: str) -> str:
    """The user part of ``sip:user@host`` or the number of ``tel:+1555...``, unescaped."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return unquote(rest.split(";", 1)[0])
    if "@" not in rest:
        return ""
    user = rest.rsplit("@", 1)[0].split(";", 1)[0].split(":", 1)[0]
    return unquote(user)


def caller_identity(invite: SipMessage) -> tuple[str, str]:
    """(number, display name) of the caller: P-Asserted-Identity when the trunk sets it,
    else Remote-Party-ID, else From."""
    for header in ("P-Asserted-Identity", "Remote-Party-ID", "From"):
        for value in split_list(invite.get(header)) if invite.get(header) else []:
            try:
                address = parse_name_addr(value, header)
            except ValueError:
                continue
            number = uri_user(address.uri)
            if number:
                return number, address.display.replace('\\"', '"')
    return "", ""


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To of the INVITE (the address the caller dialled), without tag
    remote_uri: str  # the From of the INVITE, without tag
    remote_target: str  # the caller's Contact URI
    route_set: list[str] = field(default_factory=list)
    local_contact: str = ""
    local_cseq: int = 1
    remote_cseq: int = 0

    @classmethod
    def from_invite(cls, invite: SipMessage, local_contact: str) -> Dialog:
        to = parse_name_addr(invite.get("To"), "To")
        origin = parse_name_addr(invite.get("From"), "From")
        contacts = invite.get_all("Contact")
        target = parse_name_addr(contacts[0], "Contact").uri if contacts else origin.uri
        return cls(invite.call_id, new_tag(), origin.params.get("tag", ""), to.uri, origin.uri,
                   target, invite.get_all("Record-Route"), local_contact,
                   remote_cseq=invite.cseq[0])

    def request(self, method: str, via_host: str, via_port: int,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
        """A new in-dialog request from our side (BYE, REFER, re-INVITE)."""
        self.local_cseq += 1
        message = SipMessage(method=method, uri=self.remote_target)
        message.headers = [
            ("Via", f"SIP/2.0/UDP {via_host}:{via_port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", f"<{self.remote_uri}>" + (f";tag={self.remote_tag}" if self.remote_tag
                                             else "")),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
        ]
        message.headers += [("Route", route) for route in self.route_set]
        if self.local_contact:
            message.headers.append(("Contact", f"<{self.local_contact}>"))
        message.headers += headers or []
        message.body = body
        return message
