"""Checks `manor` makes before doing any work, so that a newcomer's mistake is one clear
line instead of a traceback or, worse, silent success on the wrong data: a port already
taken, a tool run from a folder that holds no store or no token secret."""

from __future__ import annotations

import socket
from pathlib import Path

from server.settings import Settings

HINT = "run it where `manor serve` runs, or set MANOR_DATA_DIR"


class Refusal(Exception):
    """One line for the operator; `manor` prints it and exits 2."""


def check_port_free(host: str, port: int) -> None:
    """Refusal when host:port cannot be listened on (in use, or not an address here).
    SO_REUSEADDR as uvicorn sets it, so a port in TIME_WAIT is not reported as taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Refusal(
                f"manor serve: cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(another manor serve? set MANOR_PORT)"
            ) from exc


def _where(path: Path, data_dir: Path) -> str:
    return f"{path.resolve()} (MANOR_DATA_DIR={data_dir}, run from {Path.cwd()})"


def check_secret_exists(settings: Settings, command: str) -> None:
    """Refusal when no JWT secret is configured or kept: a token signed with a new secret
    would be refused by the server that has the real one."""
    path = settings.data_dir / "jwt_secret"
    if settings.jwt_secret or path.is_file():
        return
    raise Refusal(
        f"{command}: no token secret: MANOR_JWT_SECRET is unset and there is no "
        f"{_where(path, settings.data_dir)}; {HINT} or MANOR_JWT_SECRET "
        "(or pass --create-secret to make a new one)"
    )


def check_store_exists(settings: Settings, folder: Path, command: str) -> None:
    """Refusal when the embedded store's folder holds nothing: reading it would start an
    empty store and report on no data as if all were well."""
    if settings.redis_url or (folder.is_dir() and any(folder.iterdir())):
        return
    raise Refusal(
        f"{command}: no store: MANOR_REDIS_URL is unset and there is no embedded store at "
        f"{_where(folder, settings.data_dir)}; {HINT} or MANOR_REDIS_URL"
    )
