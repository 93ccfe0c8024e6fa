"""The instruction counts the performance notes rest on, run small: the server's per
request (bench/instructions.py) and Redis's per commit (bench/commit_cost.py), each under
valgrind's callgrind. `make test-bench` runs them; CI installs valgrind first (.ci/run).
A machine without valgrind fails here: these tests are never skipped.

Counts depend on the run's size, so only what holds at any size is checked: a path that
does more work on top of another counts more instructions than it."""

from __future__ import annotations

import shutil

from bench import commit_cost
from bench.instructions import per_request

VALGRIND = "valgrind"


def test_valgrind_is_installed() -> None:
    assert shutil.which(VALGRIND), "valgrind is not on PATH (Debian: apt-get install valgrind)"


def test_a_credit_costs_the_server_more_than_its_floor() -> None:
    """floor: a credit's I/O on our wire, store and fan-out (bench/credit_floor.py); credit:
    the same with the rules, the ledger and the pipeline."""
    counts = per_request(["floor", "credit"], requests=60, sockets=3, valgrind=VALGRIND)
    assert 0 < counts["floor"] < counts["credit"], counts


def test_a_commit_costs_redis_more_than_an_empty_script_call() -> None:
    commit = commit_cost.instructions("commit", 400, "always", VALGRIND)
    noop = commit_cost.instructions("noop", 400, "always", VALGRIND)
    assert 0 < noop < commit, (noop, commit)
