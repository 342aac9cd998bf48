-- ---------------------------------------------------------------------------------------------
-- clear(KEYS[1] = P:seq; ARGV: P, window, nonce)
-- Starts a new generation: from now on every entry filled before is a miss (reads compare its
-- generation), every token issued before is refused, and the old records are gone with the old
-- metadata. A walk (walk.lua, which clear() then runs to the end) deletes the old generation's
-- keys in bounded steps. Returns the new generation's first seq.
local ms, us = now()
local old = read_state(redis.call('MGET', STATE)[1])
local ns = bump(old, false, true, us)
return ns.n
