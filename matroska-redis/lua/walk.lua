-- ---------------------------------------------------------------------------------------------
-- walk(KEYS[1] = P:seq; ARGV: P, window, nonce, count)
-- One bounded step of the namespace walk (see walk in common.lua). Returns 1 when no walk was
-- wanted or this step completed one, else 0.
local ms, us = now()
local ns = open({}, false, nil, us)
if not ns then return 1 end
tick(ns, us)
local done = walk(tonumber(ARGV[4]) or 100, ms, us, ns)
if ns.dirty then write_state(ns) end
if done then return 1 end
return 0
