"""load/smoke.py end to end: a real server, locust in a subprocess, ledger verify."""

from __future__ import annotations

import pytest

from load.smoke import run_smoke


@pytest.mark.slow
def test_load_smoke_short_run_passes_and_credits() -> None:
    result = run_smoke(
        users=10, spawn_rate=10, run_time_s=6, spike_lead_s=2.0, steal_users=20, steal_run_time_s=4
    )

    assert result.locust_exit == 0, result.failure_lines
    assert result.total is not None and result.total.requests > 0
    assert result.failures == 0, result.failure_lines
    assert result.server_errors == []
    assert result.sockets_left == 0
    assert result.ledger_ok, result.ledger_output
    by_name = {op.name: op for op in result.ops}
    assert by_name["sign_in"].requests > 0
    assert by_name["sign_in@midnight"].requests > 0  # the day turned during the run
    # Every player signed in at least once, and the spike players once more after midnight.
    assert result.ledger_entries >= result.ledger_players > 0
    assert result.ledger_entries > result.ledger_players
    # The storm: thieves stole, the crops lost what the replies said, and the outbox audit
    # (printed by ledger verify) ordered exactly that and credited or holds all of it.
    assert result.storm is not None, result.storm_problems
    assert result.storm["outcomes"].get("ok", 0) > 0
    assert by_name["steal"].requests > result.storm["outcomes"]["ok"]  # caps were hit too
    taken = result.storm["coins_taken_from_crops"]
    assert result.storm["coins_replied"] == taken > 0
    ordered, credited, in_flight = result.outbox["steal"]
    assert ordered == taken == credited + in_flight
    assert result.storm_problems == []
    assert result.ok
