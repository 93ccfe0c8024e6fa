"""The JavaScript client's own suite (clients/js: `tsc --checkJs` and `node --test` against
a live `manor serve` it starts), run from `make test-web` so that CI covers it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "js"
NPM_CI_S_MAX = 300
NPM_TEST_S_MAX = 300


def npm(*args: str, timeout_s: int) -> subprocess.CompletedProcess[str]:
    npm_bin = shutil.which("npm")
    assert npm_bin is not None, "npm is not on PATH (Node 20 or newer: apt-get install nodejs npm)"
    return subprocess.run(
        [npm_bin, *args],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_js_client_typechecks_and_passes_its_tests_against_a_live_server() -> None:
    installed = npm("ci", "--no-audit", "--no-fund", timeout_s=NPM_CI_S_MAX)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    tested = npm("test", timeout_s=NPM_TEST_S_MAX)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    # node --test's summary: every test ran and passed (a file that loads no test fails).
    assert "# fail 0" in output and "# skipped 0" in output, output
    passed = [line for line in output.splitlines() if line.startswith("# pass ")]
    assert passed and int(passed[-1].split()[-1]) >= 20, output
