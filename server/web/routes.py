"""Web routes: the landing page, /play, /console, their static files, the JS client's
modules under /js/, and POST /dev/login (MANOR_DEV_LOGIN=1: a player token by name).

The pages are static files; everything they show comes from the WebSocket API (/play) and
the admin API (/console), so these routes hold no game or operator logic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from server.auth import PLAYER_ID_PATTERN, TOKEN_TTL_S_DEFAULT, AuthError, issue_token

STATIC = Path(__file__).resolve().parent / "static"
# The JS client's sources: the repo's clients/js/src when the server runs from a checkout
# (installed editable), else ./clients/js/src in the working directory (the Docker image
# copies it to /app). Absent from both: /js/ answers 404.
JS_CLIENT_IN_REPO = Path(__file__).resolve().parents[2] / "clients" / "js" / "src"


def js_client_dir() -> Path:
    if JS_CLIENT_IN_REPO.is_dir():
        return JS_CLIENT_IN_REPO
    return Path.cwd() / "clients" / "js" / "src"


LOGIN_BODY_BYTES_MAX = 1024

LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Coin Manor</title>
<style>body{font:16px system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}
a{display:block;margin:.75rem 0;font-size:1.2rem}</style></head>
<body><h1>Coin Manor</h1>
<a href="/play" data-test="landing-play">Play: the manor for a player</a>
<a href="/console" data-test="landing-console">Console: for operators (admin key)</a>
<p><small>API: <a href="/v1/openapi.json">/v1/openapi.json</a> ·
<a href="/readyz">/readyz</a></small></p>
</body></html>
"""


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def landing(request: Request) -> Response:
    return HTMLResponse(LANDING)


def _page(name: str) -> Any:
    async def page(request: Request) -> Response:
        path = STATIC / name
        if not path.is_file():
            return _error(404, "NOT_FOUND", f"{name} is not installed")
        # no-cache: a reloaded server's page is seen at once (it is revalidated, not refetched)
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    return page


async def dev_login(request: Request) -> JSONResponse:
    """Demo only: `{"player": name}` -> `{"token", "player"}`, signed like `manor token`."""
    manor = request.app.state.manor
    if not manor.settings.dev_login:
        return _error(403, "DEV_LOGIN_OFF", "set MANOR_DEV_LOGIN=1 to enable")
    raw = await request.body()
    player: object = None
    if len(raw) <= LOGIN_BODY_BYTES_MAX:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and set(body) == {"player"}:
            player = body["player"]
    if not isinstance(player, str) or not PLAYER_ID_PATTERN.fullmatch(player):
        return _error(400, "BAD_ARGS", 'body {"player": name}, name 1..64 of A-Z a-z 0-9 _ . -')
    try:
        token = issue_token(manor.jwt_secret, player, int(time.time()), TOKEN_TTL_S_DEFAULT)
    except AuthError as exc:  # the pattern above is the same check: kept for safety
        return _error(400, "BAD_ARGS", str(exc))
    return JSONResponse({"token": token, "player": player})


async def dev_login_status(request: Request) -> JSONResponse:
    """Whether POST /dev/login is on, so a page can offer sign-in by name or ask for a token."""
    return JSONResponse({"enabled": request.app.state.manor.settings.dev_login})


def routes() -> list[BaseRoute]:
    return [
        Route("/", landing),
        Route("/play", _page("play.html")),
        Route("/console", _page("console.html")),
        Route("/dev/login", dev_login, methods=["POST"]),
        Route("/dev/login", dev_login_status, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        Mount("/js", StaticFiles(directory=js_client_dir(), check_dir=False), name="js"),
    ]
