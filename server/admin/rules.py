"""The rules in force: view, validate, reload all-or-nothing, and follow other processes'
reloads (RULES_CHANNEL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from game_rules import Rules, RulesError, parse_rules
from server.admin.changes import rules_changes
from server.admin.checks import Refused, read_body, services_of
from server.rulebook import Rulebook, check_rules

log = logging.getLogger(__name__)

# Every process listens; the message is the new digest. The hash tag gives the channel a
# slot, so on a cluster every process subscribes on the same node and the count of
# processes told is exact (classic PUBLISH counts only the receiving node's subscribers).
RULES_CHANNEL = "m:{rules}:reload"


def _rules_view(rulebook: Rulebook) -> dict[str, Any]:
    rules = rulebook.rules
    return {
        "version": rules.version,
        "digest": rules.digest,
        "path": rulebook.source,
        "timezone": rules.timezone,
    }


async def rules(request: Request) -> JSONResponse:
    return JSONResponse(_rules_view(services_of(request).rulebook))


async def rules_validate(request: Request) -> JSONResponse:
    """The configured file, or `{"toml": "..."}`: ok with its version, or every problem."""
    rulebook = services_of(request).rulebook
    body = await read_body(request, allow_empty=True)
    unknown = set(body) - {"toml"}
    if unknown:
        raise Refused(400, "BAD_ARGS", f"unknown fields {sorted(unknown)}")
    text = body.get("toml")
    if text is not None and not isinstance(text, str):
        raise Refused(400, "BAD_ARGS", "toml: a string")
    try:
        checked: Rules = (
            check_rules(rulebook.path) if text is None else parse_rules(text, source="<body>")
        )
    except RulesError as exc:
        source = exc.source
        return JSONResponse({"ok": False, "source": source, "problems": exc.problems})
    return JSONResponse(
        {
            "ok": True,
            "source": rulebook.source if text is None else "<body>",
            "problems": [],
            "version": checked.version,
            "digest": checked.digest,
            "timezone": checked.timezone,
        }
    )


async def rules_reload(request: Request) -> JSONResponse:
    """Swap the rules whole or not at all, then tell every other process (RULES_CHANNEL)."""
    services = services_of(request)
    rulebook = services.rulebook
    before = rulebook.rules
    try:
        after = rulebook.reload()
    except RulesError as exc:
        return JSONResponse(
            {
                "error": {
                    "code": "RULES_INVALID",
                    "message": f"{rulebook.source}: {len(exc.problems)} problem(s); "
                    f"version {before.version} stays in force",
                    "problems": exc.problems,
                },
                "version": before.version,
            },
            status_code=422,
        )
    log.warning(
        "rules reloaded by an operator: %s (%s) -> %s (%s)",
        before.version,
        before.digest,
        after.version,
        after.digest,
    )
    store = services.store
    notified = await store.call(store.publish_command, RULES_CHANNEL, after.digest)
    return JSONResponse(
        {
            **_rules_view(rulebook),
            "previous_version": before.version,
            "previous_digest": before.digest,
            "changed": after.digest != before.digest,
            "changes": rules_changes(before, after),
            "processes_notified": int(notified),
        }
    )


def reload_follower(rulebook: Rulebook) -> Callable[[bytes], None]:
    """A fan-out sink for RULES_CHANNEL: another process reloaded the rules to `digest`;
    reload ours from our own MANOR_RULES unless we have them already."""

    def follow(digest: bytes) -> None:
        wanted = digest.decode()
        if rulebook.rules.digest == wanted:
            return
        try:
            got = rulebook.reload()
        except RulesError as exc:
            log.error("rules reload notice (%s): ours stay in force: %s", wanted, exc)
            return
        if got.digest != wanted:
            log.error(
                "rules reload notice: another process has %s, our %s has %s",
                wanted,
                rulebook.source,
                got.digest,
            )
        else:
            log.warning("rules reloaded on notice: %s (%s)", got.version, got.digest)

    return follow
