"""`manor`: the parser, serve, rules check and token; the store tools (ledger verify and
compact, report finance, draw verify, push relay) live in server/tools.py."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from game_rules import RulesError
from server.auth import TOKEN_TTL_S_DEFAULT, AuthError, issue_token, load_or_create_secret
from server.logs import configure as configure_logging
from server.preflight import Refusal, check_port_free, check_secret_exists
from server.rulebook import check_rules, read_rules
from server.settings import Settings, SettingsError, load_settings
from server.store.embedded import EmbeddedStoreError
from server.store.layout import LayoutRefused
from server.tools import (
    check_layout,
    cmd_draw_verify,
    cmd_ledger_compact,
    cmd_ledger_verify,
    cmd_push_relay,
    cmd_report_finance,
    cmd_store_migrate,
    store_url,
)
from server.transport.ws import uvicorn_options

log = logging.getLogger("manor")


def _reason(exc: OSError | UnicodeDecodeError) -> str:
    """One line for a file that cannot be read: what the system or the decoder said."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
    return exc.strerror or str(exc)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    check_port_free(settings.host, settings.port)  # before any start-up work
    config = configure_logging(settings.log_format, args.log_level)
    rules = check_rules(settings.rules)
    log.info("rules %s (%s), time zone %s", rules.version, rules.digest, rules.timezone)
    load_or_create_secret(settings.data_dir) if not settings.jwt_secret else None
    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler the
    # process would die before the embedded store is stopped. Exit through `finally`.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with store_url(settings) as url:
        check_layout(url)  # one line now, not a traceback from every worker's start-up
        os.environ["MANOR_REDIS_URL"] = url
        log.info("store %s; listening on http://%s:%d", url, settings.host, settings.port)
        uvicorn.run(
            "server.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            **uvicorn_options(settings),
            log_level=args.log_level,
            log_config=config,
            lifespan="on",
        )
    return 0


def cmd_rules_check(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0: valid; 1: read, with problems (each listed); 2: the file cannot be read."""
    try:
        rules = read_rules(args.file)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"manor rules check: cannot read {args.file}: {_reason(exc)}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file}: ok (version {rules.version}, digest {rules.digest})")
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    if not args.create_secret:
        check_secret_exists(settings, "manor token")
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    try:
        print(issue_token(secret, args.player, int(time.time()), args.ttl))
    except AuthError as exc:
        print(f"manor token: {exc}", file=sys.stderr)
        return 2
    return 0


def _count(text: str) -> int:
    count = int(text)
    if not 0 <= count <= 10_000:
        raise argparse.ArgumentTypeError("N must be in 0..10000")
    return count


def _period_id(text: str) -> str:
    if len(text) != 8 or not text.isdigit():
        raise argparse.ArgumentTypeError("a period id is its first day as YYYYMMDD")
    return text


def _days(text: str) -> int:
    days = int(text)
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError("days must be in 1..3650")
    return days


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="manor", description="Coin Manor server and tools")
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (embedded store unless MANOR_REDIS_URL)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=cmd_serve)
    rules = sub.add_parser("rules", help="rules files").add_subparsers(dest="rules", required=True)
    check = rules.add_parser("check", help="validate a rules file, listing every problem")
    check.add_argument("file")
    check.set_defaults(run=cmd_rules_check)
    ledger = sub.add_parser("ledger", help="the coin ledger").add_subparsers(
        dest="ledger", required=True
    )
    ver = ledger.add_parser("verify", help="replay journals: balances, chains, sum = 0")
    ver.add_argument("--user", help="one player id (default: everyone)")
    ver.add_argument("--archives", help="archive folder: replay archived entries from seq 1")
    ver.set_defaults(run=cmd_ledger_verify)
    from server.ledger.compaction import JOURNAL_RETENTION_DAYS

    compact = ledger.add_parser(
        "compact", help="move old journal entries to archive files and a checkpoint"
    )
    compact.add_argument("--before-days", type=_days, default=JOURNAL_RETENTION_DAYS)
    compact.add_argument("--archive-dir", help="default: $MANOR_DATA_DIR/archive")
    compact.set_defaults(run=cmd_ledger_compact)
    report = sub.add_parser("report", help="reports").add_subparsers(dest="report", required=True)
    finance = report.add_parser("finance", help="CSV: coins issued, spent, expired, clawed back")
    finance.add_argument("--from", dest="date_from", required=True, help="YYYY-MM-DD (local)")
    finance.add_argument("--to", dest="date_to", required=True, help="YYYY-MM-DD, inclusive")
    finance.add_argument("--archives", help="archive folder: count archived entries too")
    finance.add_argument("--out", help="CSV file (default: stdout)")
    finance.set_defaults(run=cmd_report_finance)
    token = sub.add_parser("token", help="print a player token for the configured secret")
    token.add_argument("player")
    token.add_argument("--ttl", type=int, default=TOKEN_TTL_S_DEFAULT, help="seconds")
    token.add_argument(
        "--create-secret",
        action="store_true",
        help="make $MANOR_DATA_DIR/jwt_secret if missing (else: refuse, a new secret's tokens "
        "are refused by a server that has another)",
    )
    token.set_defaults(run=cmd_token)
    relay = sub.add_parser("push-relay", help="forward push triggers to a webhook (HMAC signed)")
    what = relay.add_mutually_exclusive_group(required=True)
    what.add_argument("--webhook", help="http(s) URL that receives the triggers")
    what.add_argument(
        "--dead-letters",
        type=_count,
        metavar="N",
        help="print how many triggers were parked undelivered, and the newest N, then exit",
    )
    relay.add_argument("--log-level", default="info", help="info: one line per delivery")
    relay.set_defaults(run=cmd_push_relay)
    store = sub.add_parser("store", help="the store").add_subparsers(dest="store", required=True)
    migrate = store.add_parser(
        "migrate", help="move the store to this server's layout (stop every server first)"
    )
    migrate.set_defaults(run=cmd_store_migrate)
    draw = sub.add_parser("draw", help="the lucky draw").add_subparsers(dest="draw", required=True)
    draw_check = draw.add_parser("verify", help="recompute every draw of revealed periods")
    draw_check.add_argument("--pool", help="one pool (default: every pool of the rules)")
    draw_check.add_argument(
        "--period", type=_period_id, help="one period id YYYYMMDD (default: all revealed)"
    )
    draw_check.set_defaults(run=cmd_draw_verify)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command != "serve":  # serve configures after its port check
            configure_logging(settings.log_format, getattr(args, "log_level", "warning"))
        code: int = args.run(settings, args)
    except Refusal as exc:
        print(exc, file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"manor: {exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"manor: rules file:\n{exc}", file=sys.stderr)
        return 2
    except EmbeddedStoreError as exc:
        print(f"manor: embedded store: {exc}", file=sys.stderr)
        return 2
    except LayoutRefused as exc:
        print(f"manor: store layout: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
