"""Units and bounds that sections of several groups share. A rules file states durations
in seconds and the game counts milliseconds, so every section that reads a duration
converts with MS_PER_S; REWARD_COINS_MAX bounds every coin amount a section pays out (a
sign-in reward, a watering, a seed's yield, a review tier, a day's stolen coins).
"""

from __future__ import annotations

MS_PER_S = 1000
DAY_S = 86_400
REWARD_COINS_MAX = 100_000
