"""Player tokens and clock skew: a small, bounded leeway for `iat`, `nbf` and `exp`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.auth import ALGORITHM, PLAYER_ID_PATTERN, TOKEN_BYTES_MAX, AuthError, verify_token
from server.settings import JWT_LEEWAY_S_DEFAULT, SettingsError, load_settings
from server.store.embedded import EmbeddedStore
from tests.live import SECRET, Live, serve


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "kim", **claims}, SECRET, ALGORITHM)


def test_the_default_leeway_is_a_few_seconds() -> None:
    assert 1 <= JWT_LEEWAY_S_DEFAULT <= 30
    assert load_settings({}).jwt_leeway_s == JWT_LEEWAY_S_DEFAULT


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_a_token_minted_a_little_in_the_future_is_accepted(claim: str) -> None:
    now_s = int(time.time())
    ahead = token(**{claim: now_s + 2}, exp=now_s + 3600)
    with pytest.raises(AuthError):
        verify_token(SECRET, ahead, leeway_s=0)
    assert verify_token(SECRET, ahead, leeway_s=5) == "kim"
    far = token(**{claim: now_s + 60}, exp=now_s + 3600)
    with pytest.raises(AuthError):
        verify_token(SECRET, far, leeway_s=5)


def test_a_token_just_expired_is_accepted_within_the_leeway() -> None:
    now_s = int(time.time())
    just = token(iat=now_s - 100, exp=now_s - 2)
    assert verify_token(SECRET, just, leeway_s=5) == "kim"
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, just, leeway_s=0)
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, token(iat=now_s - 100, exp=now_s - 30), leeway_s=5)


def test_the_leeway_setting_is_bounded() -> None:
    assert load_settings({"MANOR_JWT_LEEWAY_S": "0"}).jwt_leeway_s == 0
    assert load_settings({"MANOR_JWT_LEEWAY_S": "30"}).jwt_leeway_s == 30
    for bad in ("-1", "301", "five"):
        with pytest.raises(SettingsError) as err:
            load_settings({"MANOR_JWT_LEEWAY_S": bad})
        assert "MANOR_JWT_LEEWAY_S" in " ".join(err.value.problems)


async def handshake(live: Live, jwt_token: str) -> int:
    try:
        async with connect(
            f"{live.url}/v1/ws", additional_headers={"Authorization": f"Bearer {jwt_token}"}
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_the_handshake_honours_the_configured_leeway(
    live: Live, redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    now_s = int(time.time())
    minted_ahead = token(iat=now_s + 2, exp=now_s + 3600)
    assert await handshake(live, minted_ahead) == 101  # the default leeway
    async with serve(redis_server.url, tmp_path / "strict", jwt_leeway_s=0) as strict:
        assert await handshake(strict, minted_ahead) == 403


def b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def forged(header: dict[str, Any], claims: dict[str, Any], key: str) -> str:
    """A token of any header and claims, signed HS256 with `key` (PyJWT's encode would
    refuse or rewrite some of them)."""
    signing = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    signature = hmac.digest(key.encode(), signing, hashlib.sha256)
    return (signing + b"." + b64(signature)).decode()


def pyjwt_player(token: str, leeway_s: int) -> str | None:
    """What PyJWT's decode (the check before ours) made of a token: the player or None."""
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
            leeway=leeway_s,
        )
    except jwt.PyJWTError:
        return None
    player = claims["sub"]
    return player if isinstance(player, str) and PLAYER_ID_PATTERN.fullmatch(player) else None


def our_player(token: str, leeway_s: int) -> str | None:
    try:
        return verify_token(SECRET, token, leeway_s)
    except AuthError:
        return None


class Later(float):
    """A time claim as seconds from when the token is made (the suite runs for minutes)."""


def now_s() -> int:
    return int(time.time())


def at_s(made_s: int, later: Later) -> int | float:
    moment_s = made_s + later
    return int(moment_s) if moment_s.is_integer() else moment_s


MOMENTS = st.sampled_from([Later(3600), Later(-3600), Later(-2), Later(2), Later(3600.5), 10**20])
ODD_VALUES = st.sampled_from([None, True, "123", "soon", [1], {"a": 1}, math.nan, math.inf])
HEADERS = st.sampled_from(
    [
        {"alg": "HS256", "typ": "JWT"},
        {"alg": "HS256"},
        {"alg": "none", "typ": "JWT"},
        {"alg": "HS512", "typ": "JWT"},
        {"typ": "JWT"},
        {"alg": "HS256", "kid": "k1"},
        {"alg": "HS256", "kid": 7},
        {"alg": "HS256", "crit": ["b64"], "b64": True},
        {"alg": "HS256", "b64": True},
    ]
)
MUTATIONS = st.sampled_from(["none", "flip", "pad", "pad3", "cut", "dot", "space", "other_key"])


def mutated(token: str, mutation: str, at: int) -> str:
    header, payload, signature = token.split(".")
    if mutation == "flip":
        spot = at % len(token)
        return token[:spot] + ("A" if token[spot] != "A" else "B") + token[spot + 1 :]
    if mutation == "pad":  # padding PyJWT takes where the length allows it
        return ".".join(s + "=" * (-len(s) % 4) for s in (header, payload, signature))
    if mutation == "pad3":
        return f"{header}===.{payload}.{signature}"
    if mutation == "cut":
        return token[: at % len(token)]
    if mutation == "dot":
        return token + ".x"
    if mutation == "space":
        return token + " "
    return token


CLAIM_VALUES = st.one_of(MOMENTS, ODD_VALUES, st.sampled_from(["", "svc", ["svc"], "kim"]))
# One change each to a valid token: its header, a claim (None: removed), its text, its key.
CHANGES = st.one_of(
    st.tuples(st.just("header"), HEADERS),
    st.tuples(st.sampled_from(["sub", "exp", "iat", "nbf", "aud", "jti"]), CLAIM_VALUES),
    st.tuples(st.just("drop"), st.sampled_from(["sub", "exp", "iat"])),
    st.tuples(st.just("text"), MUTATIONS),
)


@settings(max_examples=600, deadline=None)
@given(
    changes=st.lists(CHANGES, max_size=2),
    at=st.integers(0, 10_000),
    leeway_s=st.sampled_from([0, 5]),
)
def test_our_token_check_accepts_only_what_pyjwt_accepted(
    changes: list[tuple[str, Any]], at: int, leeway_s: int
) -> None:
    """Never more than PyJWT's decode with the options the server used to pass it, and the
    same player wherever the token is well formed with numeric times and no audience: on
    valid tokens changed once or twice."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    claims: dict[str, Any] = {"sub": "kim", "exp": Later(3600), "iat": Later(0)}
    mutation = "none"
    for what, value in changes:
        if what == "header":
            header = value
        elif what == "drop":
            claims.pop(value, None)
        elif what == "text":
            mutation = value
        else:
            claims[what] = value
    key = "another-secret-0123456789abcdef-0123456789" if mutation == "other_key" else SECRET
    made_s = now_s()
    claims = {n: at_s(made_s, v) if isinstance(v, Later) else v for n, v in claims.items()}
    token = mutated(forged(header, claims, key), mutation, at)
    ours, theirs = our_player(token, leeway_s), pyjwt_player(token, leeway_s)
    if ours is not None:
        assert ours == theirs
    well_typed = "b64" not in header and "crit" not in header and not claims.get("aud")
    times = [claims[c] for c in ("exp", "iat", "nbf") if c in claims]
    well_typed = well_typed and all(
        isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in times
    )
    if theirs is not None and well_typed:
        assert ours == theirs


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def noncanonical(token: str) -> str:
    """The same token with its signature's last character's unused bits set: it decodes to
    the same bytes, but it is not the base64url text of them."""
    head, _, signature = token.rpartition(".")
    last = ALPHABET.index(signature[-1])
    assert last & 3 == 0  # 32 bytes in 43 characters: the last carries 2 unused bits
    return f"{head}.{signature[:-1]}{ALPHABET[last | 1]}"


def badly_padded(header: str, payload: str) -> str:
    """Validly signed, with padding where the segment's length allows none (PyJWT refuses)."""
    assert len(header) % 4 != 3  # else one '=' would be its right padding
    return signed(header + "=", payload)


def signed(header: str, payload: str) -> str:
    """The two segments as they are, signed HS256 with the server's secret."""
    signature = hmac.digest(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{b64(signature).decode()}"


def test_tokens_pyjwt_refused_are_refused() -> None:
    made_s = now_s()
    valid = {"sub": "kim", "exp": made_s + 3600}
    good = forged({"alg": "HS256", "typ": "JWT"}, valid, SECRET)
    assert our_player(good, 0) == "kim"
    header, payload, signature = good.split(".")
    refused = [
        forged({"alg": "none"}, valid, SECRET),
        forged({"alg": "HS512"}, valid, SECRET),
        forged({"alg": "HS256", "kid": 7}, valid, SECRET),
        forged({"alg": "HS256"}, valid, "another-secret-0123456789abcdef-0123456789"),
        forged({"alg": "HS256"}, {**valid, "aud": "svc"}, SECRET),
        forged({"alg": "HS256"}, {**valid, "jti": 5}, SECRET),
        forged({"alg": "HS256"}, {**valid, "nbf": made_s + 60}, SECRET),
        forged({"alg": "HS256"}, {**valid, "exp": made_s - 60}, SECRET),
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.",
        f"{header}===.{payload}.{signature}",
        noncanonical(good),
        badly_padded(header, payload),
    ]
    for token in refused:
        assert pyjwt_player(token, 0) is None
        assert our_player(token, 0) is None, token
    padded = ".".join(part + "=" * (-len(part) % 4) for part in (header, payload, signature))
    assert pyjwt_player(padded, 0) == our_player(padded, 0) == "kim"


def test_an_empty_secret_admits_no_token() -> None:
    with pytest.raises(AuthError):
        verify_token("", forged({"alg": "HS256"}, {"sub": "kim", "exp": now_s() + 60}, ""))


@pytest.mark.parametrize("part", ["header", "payload"])
def test_a_deeply_nested_token_is_refused_not_raised(part: str) -> None:
    """JSON nested past the decoder's recursion limit fits in a token of 2 048 characters
    (PyJWT's decode raised RecursionError on it, and so did the first cut of ours)."""
    nested = b64(b"[" * 1200).decode()
    header = b64(json.dumps({"alg": "HS256"}).encode()).decode()
    payload = b64(json.dumps({"sub": "kim", "exp": now_s() + 60}).encode()).decode()
    token = signed(nested, payload) if part == "header" else signed(header, nested)
    assert len(token) <= TOKEN_BYTES_MAX
    with pytest.raises(AuthError):
        verify_token(SECRET, token)


async def test_a_deeply_nested_token_gets_a_403_at_the_handshake(live: Live) -> None:
    nested = b64(b"[" * 1200).decode()
    payload = b64(json.dumps({"sub": "kim", "exp": now_s() + 60}).encode()).decode()
    assert await handshake(live, signed(nested, payload)) == 403
