-- noop.lua (the bench's): a script call that does nothing, with commit_floor.lua's KEYS and
-- ARGV: what invoking a script costs Redis before it runs a command.
-- KEYS, ARGV: as commit_floor.lua's, unread.
-- Returns: 'ok'

return 'ok'
