"""The two ways the rules say no: to a player (RuleViolation) and to an operator (RulesError)."""

from __future__ import annotations

import re

_CODE_RE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")


class RuleViolation(Exception):
    """A player action the rules refuse. `code` is stable: clients branch on it."""

    def __init__(self, code: str, message: str) -> None:
        if not _CODE_RE.fullmatch(code):
            raise ValueError(f"rule violation code must be UPPER_SNAKE, got {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RulesError(Exception):
    """A rules file that cannot be used, with every problem found in it, not just the first."""

    def __init__(self, problems: list[str], source: str = "<rules>") -> None:
        if not problems:
            raise ValueError("RulesError needs at least one problem")
        self.problems = list(problems)
        self.source = source
        # One line per problem, prefixed like a compiler message so operators can grep it.
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))
