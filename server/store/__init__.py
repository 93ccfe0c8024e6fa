"""Redis: the pipelined connection, the Lua scripts (lua/), key names, leases, timers.

The bottom layer: imports only the base modules (settings, clock), never the layers above.
"""
