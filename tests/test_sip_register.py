"""Registration with a SIP registrar: SIPp plays the registrar, challenging with digest auth
and checking the answer itself; the gateway registers, refreshes, and unregisters."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.sip.peers import NEED_SIPP, SIPP, free_udp_port, run_sipp
from voice.gateways.sip import SipGateway, SipOptions
from voice.gateways.sip.digest import authorization, parse_challenge
from voice.gateways.sip.transaction import Timers
from voicedesk.config import TelephonyConfig


async def _nothing(line: object) -> None:
    return None


def test_digest_answer_matches_rfc_2617_example() -> None:
    # RFC 2617 3.5, with the SIP method in place of GET: the same arithmetic, checked by hand.
    challenge = parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                                'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = authorization(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life",
                          nc=1, cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "nc=00000001" in value and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


async def _register(tmp_path: Path, password: str, settle_s: float) -> tuple[object, int]:
    """Run SIPp as a registrar expecting ``trunk-user``/``s3cret-Pass``; return its result
    and how many registrations the gateway completed in ``settle_s``."""
    registrar_port = free_udp_port()
    sipp = asyncio.create_task(run_sipp(
        "uas_registrar.xml", None, tmp_path / "sipp", sip_port=registrar_port,
        fill={"auth_user": "trunk-user", "auth_pass": "s3cret-Pass", "expires": "2",
              "refresh_timeout_ms": "6000"}, timeout_s=20))
    await asyncio.sleep(0.5)  # SIPp binds its port
    os.environ["VOICEDESK_TEST_SIP_PASSWORD"] = password
    config = TelephonyConfig(rtp_ports="", registrar=f"sip:127.0.0.1:{registrar_port}",
                             username="trunk-user", password_env="VOICEDESK_TEST_SIP_PASSWORD")
    gateway = SipGateway(config, _nothing, "127.0.0.1", 0, SipOptions(timers=Timers(0.1)))
    await gateway.start()
    try:
        await asyncio.sleep(settle_s)
        registrations = gateway.registration.registrations  # type: ignore[union-attr]
    finally:
        await gateway.stop()  # unregisters
    return await sipp, registrations


@pytest.mark.skipif(SIPP is None, reason=NEED_SIPP)
def test_gateway_registers_with_digest_refreshes_and_unregisters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEDESK_TEST_SIP_PASSWORD", "")
    result, registrations = asyncio.run(_register(tmp_path, "s3cret-Pass", 3.0))
    assert result.returncode == 0, result.explain()  # type: ignore[attr-defined]
    assert registrations == 2  # the first registration and one refresh (granted 2 s)
    assert "Expires: 0" in result.messages  # type: ignore[attr-defined]


@pytest.mark.skipif(SIPP is None, reason=NEED_SIPP)
def test_wrong_password_is_refused_and_the_gateway_keeps_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEDESK_TEST_SIP_PASSWORD", "")
    result, registrations = asyncio.run(_register(tmp_path, "wrong", 1.0))
    assert registrations == 0
    assert "SIP/2.0 403 Forbidden" in result.messages  # type: ignore[attr-defined]
    assert result.returncode != 0  # the registrar's scenario failed: the answer was wrong
