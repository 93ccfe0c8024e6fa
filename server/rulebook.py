"""The rules in force: read from MANOR_RULES or the default shipped in game_rules."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from game_rules import Rules, parse_rules

DEFAULT_RULES = "default.toml"


def read_rules(path: str = "") -> Rules:
    """Parse and validate a rules file (RulesError lists every problem)."""
    if path:
        return parse_rules(Path(path).read_text("utf-8"), source=path)
    text = resources.files("game_rules").joinpath(DEFAULT_RULES).read_text("utf-8")
    return parse_rules(text, source=f"game_rules/{DEFAULT_RULES}")


class Rulebook:
    """Holds the current rules; a reload swaps them whole or not at all."""

    def __init__(self, rules: Rules, path: str = "") -> None:
        self.rules = rules
        self.path = path

    def reload(self) -> Rules:
        self.rules = read_rules(self.path)
        return self.rules
