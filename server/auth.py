"""Player tokens: JWT HS256, `sub` = player id, `exp` required, a small clock leeway."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

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


def verify_token(secret: str, token: str, leeway_s: int = 0) -> str:
    """The player id of a valid token, or AuthError.

    `leeway_s` forgives that much clock skew between the issuer and this server, both
    ways: a token whose `iat` or `nbf` is up to `leeway_s` in the future, or whose `exp`
    passed up to `leeway_s` ago, is still valid (MANOR_JWT_LEEWAY_S).
    """
    if len(token) > TOKEN_BYTES_MAX:
        raise AuthError("token too long")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
            leeway=leeway_s,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
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
