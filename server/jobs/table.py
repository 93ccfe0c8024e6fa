"""The background work of a server process: timers, the outbox relay, daily jobs."""

from __future__ import annotations

from functools import partial

from server.jobs.compactor import compact_next
from server.jobs.scheduler import Scheduler
from server.ledger import outbox
from server.ops import triggers
from server.ops.account import remind_streaks
from server.ops.draw_stock import sweep as sweep_draws
from server.ops.farm import fire_ripe, fire_thefts
from server.ops.growth import recompute_levels
from server.ops.mall_repair import sweep as sweep_mall
from server.pipeline import Services
from server.platform import commerce
from server.store.lease import Leases
from server.store.timers import Timers

TIMER_TICK_S = 1.0
OUTBOX_RELAY_S = 2.0
DRAW_SWEEP_S = 5.0  # draw reservations past their time (the player's next draw sooner)
MALL_SWEEP_S = 5.0  # stock reservations past their deadline (a touch repairs them sooner)
EXPIRY_SWEEP_MINUTE = 5  # 00:05 local: just past the boundary
EXPIRY_WARNING_HOUR = 10  # 10:00 local: not in anyone's quiet hours
GROWTH_RECOMPUTE_MINUTE = 10  # 00:10 local: levels of a new day (or a monthly 8th)


def timers_for(services: Services) -> Timers:
    return Timers(
        services.store,
        {
            "ripe": partial(fire_ripe, services),
            "thefts": partial(fire_thefts, services),
            "notify": partial(triggers.fire_deferred, services),
            "hold": partial(commerce.fire_hold, services),
        },
    )


def scheduler_for(services: Services, timers: Timers, relay: outbox.Relay) -> Scheduler:
    scheduler = Scheduler(Leases(services.store))
    clock = services.clock
    scheduler.every("timers", TIMER_TICK_S, lambda: timers.tick(clock.now_ms(), clock.now_ms))
    scheduler.every("outbox", OUTBOX_RELAY_S, lambda: relay.run(clock.now_ms()))
    scheduler.every("draw_sweep", DRAW_SWEEP_S, lambda: sweep_draws(services))
    scheduler.every("mall_sweep", MALL_SWEEP_S, lambda: sweep_mall(services))
    rules = services.rulebook.rules
    at = rules.notify.streak_reminder_at
    scheduler.daily(
        "streak_reminder", at.hour, at.minute, rules.timezone, lambda: remind_streaks(services)
    )
    # Expiry happens on every touch too; the sweep catches wallets nobody touches.
    scheduler.daily(
        "expiry_sweep",
        0,
        EXPIRY_SWEEP_MINUTE,
        rules.timezone,
        lambda: commerce.sweep_expiry(services),
    )
    # Every day, also with a monthly recompute: a player already recomputed is skipped,
    # and a day the job missed is caught up by the next. Reads recompute lazily anyway.
    scheduler.daily(
        "growth_recompute",
        0,
        GROWTH_RECOMPUTE_MINUTE,
        rules.timezone,
        lambda: recompute_levels(services),
    )
    scheduler.daily(
        "expiry_warning",
        EXPIRY_WARNING_HOUR,
        0,
        rules.timezone,
        lambda: commerce.warn_expiring(services),
    )
    settings = services.settings
    if settings.compact_every_s:
        scheduler.every(
            "compaction",
            settings.compact_every_s,
            lambda: compact_next(
                services.store,
                settings.data_dir / "archive",
                clock.now_ms(),
                settings.compact_buckets_per_run,
            ),
        )
    return scheduler
