"""The rules in force: read from MANOR_RULES or the default shipped in game_rules."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from game_rules import Rules, RulesError, parse_rules

DEFAULT_RULES = "default.toml"


def read_rules(path: str = "") -> Rules:
    """Parse and validate a rules file (RulesError lists every problem)."""
    if path:
        return parse_rules(Path(path).read_text("utf-8"), source=path)
    text = resources.files("game_rules").joinpath(DEFAULT_RULES).read_text("utf-8")
    return parse_rules(text, source=f"game_rules/{DEFAULT_RULES}")


def check_rules(path: str = "") -> Rules:
    """`read_rules`, with a file that cannot be read reported as a RulesError too."""
    try:
        return read_rules(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([f"cannot read the rules file: {exc}"], path or DEFAULT_RULES) from exc


class Rulebook:
    """Holds the current rules; a reload swaps them whole or not at all."""

    def __init__(self, rules: Rules, path: str = "") -> None:
        self.rules = rules
        self.path = path

    @property
    def source(self) -> str:
        return self.path or f"game_rules/{DEFAULT_RULES}"

    def reload(self) -> Rules:
        """Read the file again; on any problem (RulesError) the old rules stay in force."""
        rules = check_rules(self.path)  # raises before anything changes
        self.rules = rules
        return rules
