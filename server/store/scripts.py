"""Lua scripts shipped as files in server/store/lua, loaded by SHA at start-up.

Each file opens with a header naming its KEYS, ARGV and return value; a file without one
is refused, so a script's contract is always written next to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

HEADER_WORDS = ("KEYS", "ARGV", "Returns")


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _check_header(name: str, source: str) -> None:
    header = []
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        header.append(line)
    text = "\n".join(header)
    missing = [word for word in HEADER_WORDS if word not in text]
    if missing:
        raise ValueError(f"server/store/lua/{name}.lua: header lacks {', '.join(missing)}")


def load_script(name: str) -> Script:
    source = resources.files("server.store").joinpath("lua", f"{name}.lua").read_text("utf-8")
    _check_header(name, source)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def all_scripts() -> dict[str, Script]:
    folder = resources.files("server.store").joinpath("lua")
    names = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua"))
    return {name: load_script(name) for name in names}
