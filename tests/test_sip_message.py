"""SIP message parsing on the RFC 4475 torture messages, and SDP negotiation.

The messages in tests/sip/torture are the RFC's own examples (section 3.1.1:
valid; 3.1.2: invalid), byte for byte where the RFC shows bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voice.gateways.sip.dialog import caller_identity
from voice.gateways.sip.message import (
    SipSyntaxError,
    parse,
    parse_name_addr,
    parse_via,
    response,
)
from voice.gateways.sip.sdp import SdpError, build_sdp, negotiate, parse_offer

TORTURE = Path(__file__).parent / "sip" / "torture"


def torture(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def test_wsinv_folding_compact_forms_and_odd_spacing_parse() -> None:
    message = parse(torture("wsinv"))
    assert message.method == "INVITE"
    assert message.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert message.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert message.cseq == (9, "INVITE")
    assert message.get("Max-Forwards") == "0068"
    assert message.to_tag == "1918181833n"
    assert message.from_tag == "98asjd8"
    vias = [parse_via(v) for v in message.get_all("Via")]
    assert [(v.transport, v.host) for v in vias] == [
        ("UDP", "192.0.2.2"), ("TCP", "spindle.example.com"), ("UDP", "192.168.255.111")]
    assert vias[2].params["branch"] == "z9hG4bK30239"
    assert message.get("Subject") == ""
    assert message.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert message.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = parse_name_addr(message.get_all("Contact")[0])
    assert contact.uri == "sip:jdrosen@example.com"
    assert contact.params == {"newparam": "newvalue", "secondparam": "", "q": "0.33"}
    assert len(message.body) == 150
    assert parse_offer(message.body).address == "192.0.2.4"


def test_intmeth_unusual_but_legal_characters_parse() -> None:
    message = parse(torture("intmeth"))
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert message.uri.startswith("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:")
    assert message.from_tag == "_token~1'+`*%!-."
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert parse_name_addr(message.get("From")).display == "token1~` token2'+_ token3*%!.-"


@pytest.mark.parametrize("name", ["esc01", "escnull", "esc02", "lwsdisp", "longreq", "semiuri",
                                  "transports", "baddate"])
def test_valid_torture_requests_parse(name: str) -> None:
    message = parse(torture(name))
    assert message.is_request
    assert message.call_id.startswith(name[:5])


def test_longreq_keeps_every_via_in_order() -> None:
    vias = parse(torture("longreq")).get_all("Via")
    assert len(vias) == 34
    assert vias[0] == "SIP/2.0/TCP sip33.example.com"
    assert parse_via(vias[-1]).params["received"] == "192.0.2.5"


def test_esc02_percent_in_method_is_not_an_escape() -> None:
    message = parse(torture("esc02"))
    assert message.method == "RE%47IST%45R"  # an unknown method, not REGISTER
    assert len(message.get_all("Contact")) == 2  # C%6Fntact is an unknown header


def test_unusual_and_empty_reason_phrases_parse() -> None:
    unreason = parse(torture("unreason"))
    assert unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 но сто")
    assert len(unreason.body) == 154
    noreason = parse(torture("noreason"))
    assert (noreason.status, noreason.reason) == (100, "")


@pytest.mark.parametrize("name,why", [
    ("badinv01", "empty or malformed parameter"),
    ("clerr", "Content-Length 9999 exceeds"),
    ("ncl", "Content-Length '-999'"),
    ("scalar02", "above 2**31-1"),
    ("quotbal", "unterminated quoted"),
    ("ltgtruri", "is not a URI"),
    ("lwsruri", "single spaces"),
    ("lwsstart", "single spaces"),
    ("trws", "single spaces"),
    ("escruri", "carries headers"),
    ("regbadct", "must be enclosed in <>"),
    ("badaspec", "no spaces inside <>"),
    ("baddn", "must be quoted"),
    ("mismatch01", "does not match request method OPTIONS"),
    ("mismatch02", "does not match request method NEWMETHOD"),
    ("insuf", "missing mandatory header(s) From, To, Call-ID"),
    ("mcl01", "2 Content-Length headers"),
    ("multi01", "exactly one is allowed"),
])
def test_invalid_torture_requests_are_rejected_with_a_reason_and_a_replyable_message(
        name: str, why: str) -> None:
    with pytest.raises(SipSyntaxError) as caught:
        parse(torture(name))
    error = caught.value
    assert why in error.reason
    assert error.status == 400
    assert error.message is not None and error.message.is_request
    reply = response(error.message, 400, "Bad Request", to_tag="x")
    assert reply.encode().startswith(b"SIP/2.0 400 Bad Request\r\n")


def test_unknown_sip_version_is_505() -> None:
    with pytest.raises(SipSyntaxError) as caught:
        parse(torture("badvers"))
    assert caught.value.status == 505


@pytest.mark.parametrize("name", ["scalarlg", "bigcode"])
def test_invalid_torture_responses_are_rejected(name: str) -> None:
    with pytest.raises(SipSyntaxError) as caught:
        parse(torture(name))
    assert caught.value.message is None or not caught.value.message.is_request


def test_response_copies_transaction_headers_and_adds_our_tag() -> None:
    request = parse(torture("lwsdisp"))
    reply = response(request, 200, "OK", to_tag="abc", headers=[("Allow", "INVITE")])
    again = parse(reply.encode())
    assert again.status == 200
    assert again.get("Via") == request.get("Via")
    assert again.to_tag == "abc"
    assert again.from_tag == "323"
    assert again.cseq == (60, "OPTIONS")
    assert again.get("Content-Length") == "0"


def test_offer_prefers_the_callers_first_g711_codec_and_keeps_its_dtmf_type() -> None:
    offer = parse_offer(b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\n"
                        b"t=0 0\r\nm=audio 4000 RTP/AVP 9 8 0 96\r\na=rtpmap:9 G722/8000\r\n"
                        b"a=rtpmap:96 telephone-event/8000\r\n")
    media = negotiate(offer)
    assert (media.address, media.port, media.codec_pt, media.codec, media.dtmf_pt) == \
        ("10.0.0.1", 4000, 8, "PCMA", 96)
    answer = parse_offer(build_sdp("127.0.0.1", 5000, 8, "PCMA", 96, 1))
    assert answer.payload_types == [8, 96]


def test_offer_without_g711_is_refused_with_what_it_offered() -> None:
    offer = parse_offer(b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 9\r\n"
                        b"a=rtpmap:9 G722/8000\r\n")
    with pytest.raises(SdpError, match="offer has G722"):
        negotiate(offer)


def _invite(extra: str) -> bytes:
    return ("INVITE sip:assistant@192.0.2.9 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            'From: "Front Desk" <sip:%2B15550100@pbx.example.com>;tag=1\r\n'
            "To: <sip:assistant@192.0.2.9>\r\nCall-ID: cid-1\r\nCSeq: 1 INVITE\r\n"
            f"{extra}Content-Length: 0\r\n\r\n").encode()


def test_caller_id_is_the_asserted_identity_when_the_trunk_gives_one() -> None:
    message = parse(_invite('P-Asserted-Identity: "Jane Doe" <tel:+442071234567>\r\n'))
    assert caller_identity(message) == ("+442071234567", "Jane Doe")


def test_caller_id_falls_back_to_the_from_user_unescaped() -> None:
    assert caller_identity(parse(_invite(""))) == ("+15550100", "Front Desk")
