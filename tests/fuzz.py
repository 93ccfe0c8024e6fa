"""What the fuzz tests share: the documented error codes, nasty values, a store digest.

The codes come from the docs' error tables, so a code the server answers but the docs do
not list (or the reverse drift) fails the fuzz tests.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

DOCS = Path(__file__).parent.parent / "docs"
CODE_RE = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)`")


def documented_codes(doc: str, column: int) -> set[str]:
    """The UPPER_SNAKE codes in one column of the table under the doc's `## Errors`."""
    text = (DOCS / doc).read_text("utf-8")
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > column + 1 and not set(cells[1]) <= set(" -"):
            codes.update(CODE_RE.findall(cells[column + 1]))
    assert codes, f"no error codes found in {doc}"
    return codes


def nested(rng: random.Random, depth: int) -> Any:
    value: Any = rng.choice([1, "x", None, []])
    for _ in range(depth):
        value = {"a": value} if rng.random() < 0.5 else [value]
    return value


def nasty(rng: random.Random, binary: bool) -> Any:
    """A value of a wrong type, out of range, huge, empty or nested."""
    pool: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        1,
        23,
        24,
        100,
        101,
        2**31,
        2**53 - 1,
        2**53,
        2**53 + 1,
        -(2**53),
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        0.0,
        -0.0,
        1.5,
        1.0,
        float("inf"),
        float("nan"),
        "",
        " ",
        "1",
        "x" * 64,
        "x" * 65,
        "x" * rng.randint(100, 3000),
        "turnip",
        "pal",
        "fuzz",
        "ñandú",
        "a\x00b",
        "👾" * rng.randint(1, 40),
        "a b",
        "../etc",
        "TURNIP",
        [],
        [1, 2, 3],
        {},
        {"a": 1},
        {"limit": 1},
        list(range(rng.randint(10, 300))),
        {f"k{n}": n for n in range(rng.randint(2, 40))},
        nested(rng, rng.randint(2, 120)),
    ]
    if binary:
        import msgpack

        pool += [b"", b"\xff" * 10, b"state", msgpack.ExtType(5, b"xx"), msgpack.Timestamp(0)]
    else:
        pool += [10**30, -(10**30), 1e300]
    return rng.choice(pool)


async def digest(redis: Redis) -> str:
    """A hash of every key's value (DUMP), request-id replies and socket leases (which come
    and go with sockets) aside: equal digests, same data."""
    keys = sorted(
        k for k in await redis.keys("*") if b":rep:" not in k and not k.endswith(b":sockets")
    )
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.dump(key)
        dumps = await pipe.execute()
    sha = hashlib.sha1()
    for key, dumped in zip(keys, dumps, strict=True):
        sha.update(key + b"\x00" + (dumped or b"") + b"\x01")
    return sha.hexdigest()
