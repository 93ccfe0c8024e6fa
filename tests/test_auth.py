"""Player tokens and clock skew: a small, bounded leeway for `iat`, `nbf` and `exp`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.auth import ALGORITHM, AuthError, verify_token
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
