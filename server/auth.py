"""Player tokens: JWT HS256, `sub` = player id, `exp` required, a small clock leeway.

PyJWT issues them. The check of every socket's upgrade is ours: PyJWT's decode cost ~41 us a
token here (a generator over each character of each segment, the key's PEM and SSH checks
on every call, three JSON decodes), the largest piece of a handshake's own work in a
connect wave (13 % of the server's time; ours takes ~14 us: docs/benchmark.md). Ours
accepts what PyJWT's `decode(token, secret, algorithms=["HS256"], options={"require":
["sub", "exp"]}, leeway=...)` accepts, or less (a test compares the two on generated
tokens): an `alg` other than HS256, any `crit` or `b64` header, an `aud` claim and claims of
the wrong type are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import jwt

ALGORITHM = "HS256"
PLAYER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
TOKEN_BYTES_MAX = 2048
TOKEN_TTL_S_DEFAULT = 86_400
TOKEN_TTL_S_MAX = 366 * 86_400


class AuthError(Exception):
    """A token that does not admit anyone; the message says why (never the secret)."""


def issue_token(secret: str, player_id: str, now_s: int, ttl_s: int = TOKEN_TTL_S_DEFAULT) -> str:
    if not PLAYER_ID_PATTERN.fullmatch(player_id):
        raise AuthError("player id must be 1..64 of A-Z a-z 0-9 _ . -")
    if not 0 < ttl_s <= TOKEN_TTL_S_MAX:
        raise AuthError(f"ttl must be 1..{TOKEN_TTL_S_MAX} s")
    return jwt.encode({"sub": player_id, "iat": now_s, "exp": now_s + ttl_s}, secret, ALGORITHM)


# A base64url segment as PyJWT takes it: the alphabet, then at most two '=' of padding.
SEGMENT = re.compile(rb"([A-Za-z0-9_-]*)(={0,2})")
NUMBER_TYPES = (int, float)


def verify_token(secret: str, token: str, leeway_s: int = 0) -> str:
    """The player id of a valid token, or AuthError.

    `leeway_s` forgives that much clock skew between the issuer and this server, both
    ways: a token whose `iat` or `nbf` is up to `leeway_s` in the future, or whose `exp`
    passed up to `leeway_s` ago, is still valid (MANOR_JWT_LEEWAY_S).
    """
    if not secret:  # PyJWT refused an empty HMAC key: so do we, for every token
        raise AuthError("no token secret is set")
    if len(token) > TOKEN_BYTES_MAX:
        raise AuthError("token too long")
    if not token.isascii():
        raise AuthError("invalid token: not base64url")
    parts = token.encode().split(b".")
    if len(parts) != 3:
        raise AuthError("invalid token: not three segments")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_segment(header_b64), "header")
    if header.get("alg") != ALGORITHM:
        raise AuthError("invalid token: the algorithm must be HS256")
    if "crit" in header or "b64" in header:
        raise AuthError("invalid token: header extensions are not supported")
    if "kid" in header and not isinstance(header["kid"], str):
        raise AuthError("invalid token: kid must be a string")
    signed = hmac.digest(secret.encode(), header_b64 + b"." + payload_b64, hashlib.sha256)
    if not hmac.compare_digest(signed, _segment(signature_b64)):
        raise AuthError("invalid token: signature verification failed")
    return _player_of(_json_object(_segment(payload_b64), "payload"), leeway_s)


def _segment(raw: bytes) -> bytes:
    """A segment's bytes; only the canonical base64url text of them (as PyJWT)."""
    match = SEGMENT.fullmatch(raw)
    if match is None:
        raise AuthError("invalid token: not base64url")
    text, padding = match.groups()
    if (padding and len(raw) % 4) or len(text) % 4 == 1:
        raise AuthError("invalid token: bad base64url padding")
    try:
        decoded = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except binascii.Error:
        raise AuthError("invalid token: not base64url") from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != text:
        raise AuthError("invalid token: not canonical base64url")
    return decoded


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # nesting past the decoder's limit fits in a token
        raise AuthError(f"invalid token: the {name} is not JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"invalid token: the {name} is not a JSON object")
    return value


def _player_of(claims: dict[str, Any], leeway_s: int) -> str:
    for name in ("sub", "exp"):
        if claims.get(name) is None:
            raise AuthError(f'invalid token: Token is missing the "{name}" claim')
    now_s = time.time()
    for name in ("iat", "nbf", "exp"):
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, NUMBER_TYPES):
            raise AuthError(f"invalid token: {name} must be a number")
        try:
            moment_s = int(value)
        except (ValueError, OverflowError):  # NaN, infinity
            raise AuthError(f"invalid token: {name} must be a number") from None
        if name == "exp" and moment_s <= now_s - leeway_s:
            raise AuthError("token expired")
        if name != "exp" and moment_s > now_s + leeway_s:
            raise AuthError(f"invalid token: The token is not yet valid ({name})")
    if claims.get("aud"):
        raise AuthError("invalid token: an audience claim is not accepted")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise AuthError("invalid token: jti must be a string")
    player_id = claims["sub"]
    if not isinstance(player_id, str) or not PLAYER_ID_PATTERN.fullmatch(player_id):
        raise AuthError("token subject is not a valid player id")
    return player_id


def load_or_create_secret(data_dir: Path) -> str:
    """The embedded default: one secret generated on first start, kept with the data."""
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret
