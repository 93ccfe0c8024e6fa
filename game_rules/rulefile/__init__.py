"""The parts of the rules-file parser that game_rules/rules.py assembles: `table` (the
`Table` reader that collects every problem instead of stopping at the first), `catalog`
(tables of named entries: seeds, partners), `limits` (units and bounds several sections
share), and one module per group of sections, each holding the sections' dataclasses and
their readers: `signin_sections` ([signin], [expiry]), `farm_sections` ([farm], [seeds],
[notify]) and `commerce_sections` ([checkout], [rewards], [exchange]). Import the
dataclasses and constants from game_rules.rules, which re-exports them all.
"""
