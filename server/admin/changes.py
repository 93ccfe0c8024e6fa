"""What a rules reload changed: the paths of the values that differ between two Rules,
walked field by field (mappings first: the seed catalog is a mapping and a dataclass;
then dataclasses, then sequences of one length), for the reload's answer and the
operators' console."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

CHANGES_MAX = 50  # listed in one answer; more are counted in the last line
VALUE_CHARS_MAX = 80  # of each side of a change
SKIPPED = frozenset({"digest", "tz"})  # the digest always changes; tz follows timezone


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_CHARS_MAX else text[: VALUE_CHARS_MAX - 1] + "…"


def _walk(path: str, old: Any, new: Any, out: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted({*old, *new}, key=str):
            name = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(f"{name}: removed")
            elif key not in old:
                out.append(f"{name}: added {_short(new[key])}")
            else:
                _walk(name, old[key], new[key], out)
        return
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        for f in dataclasses.fields(old):
            if f.name not in SKIPPED:
                name = f"{path}.{f.name}" if path else f.name
                _walk(name, getattr(old, f.name), getattr(new, f.name), out)
        return
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _walk(f"{path}[{i}]", a, b, out)
        return
    out.append(f"{path}: {_short(old)} -> {_short(new)}")


def rules_changes(old: Any, new: Any) -> list[str]:
    """["farm.water_ms: 1800000 -> 900000", ...] (at most CHANGES_MAX lines)."""
    out: list[str] = []
    _walk("", old, new, out)
    if len(out) > CHANGES_MAX:
        more = len(out) - CHANGES_MAX + 1
        out = [*out[: CHANGES_MAX - 1], f"... and {more} more"]
    return out
