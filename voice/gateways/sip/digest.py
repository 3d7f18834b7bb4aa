"""HTTP Digest authentication as SIP uses it (RFC 2617, RFC 3261 22): answering a challenge.

Registrars and trunks challenge a REGISTER with 401 (or 407 from a proxy);
the answer proves the password without sending it. MD5 and MD5-sess, with or
without ``qop=auth``, cover what SIP servers send in practice.
"""

from __future__ import annotations

import hashlib
import secrets

from voice.gateways.sip.message import split_list


def parse_challenge(header: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", qop="auth"`` into {realm: x, nonce: y, qop: auth}."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"authentication scheme {scheme!r} is not Digest; only Digest is "
                         f"supported")
    out: dict[str, str] = {}
    for part in split_list(rest):
        key, _, value = part.partition("=")
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1].replace('\\"', '"')
        out[key.strip().lower()] = value
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the protocol's hash


def authorization(challenge: dict[str, str], method: str, uri: str, username: str,
                  password: str, nc: int = 1, cnonce: str | None = None) -> str:
    """The ``Authorization`` (or ``Proxy-Authorization``) value answering ``challenge``."""
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    algorithm = challenge.get("algorithm", "MD5")
    if algorithm.upper() not in ("MD5", "MD5-SESS"):
        raise ValueError(f"digest algorithm {algorithm!r} is not supported (MD5, MD5-sess)")
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = _md5(f"{username}:{realm}:{password}")
    if algorithm.upper() == "MD5-SESS":
        ha1 = _md5(f"{ha1}:{nonce}:{cnonce}")
    ha2 = _md5(f"{method}:{uri}")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in qops:
        count = f"{nc:08x}"
        response = _md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', f"algorithm={algorithm}", f'cnonce="{cnonce}"',
                   "qop=auth", f"nc={count}"]
    else:
        fields += [f'response="{_md5(f"{ha1}:{nonce}:{ha2}")}"', f"algorithm={algorithm}"]
    if "opaque" in challenge:
        fields.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(fields)
