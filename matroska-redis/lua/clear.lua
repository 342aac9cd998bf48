-- ---------------------------------------------------------------------------------------------
-- clear(KEYS[1] = P:meta; ARGV: P, window, nonce)
-- Starts a new generation: from now on every entry filled before is a miss (reads compare its
-- generation), every token issued before is refused, and the old records are gone with the old
-- metadata. A walk (walk.lua, which clear() then runs to the end) deletes the old generation's
-- keys in bounded steps. Returns the new generation's first seq.
local ms, us = now()
local h = redis.pcall('HMGET', META, 'seq', 'safe', 'gen')
local old = nil
if type(h) == 'table' and h.err == nil then old = read_state(h[1], h[2], h[3]) end
local ns = bump(old, true, us)
return ns.n
