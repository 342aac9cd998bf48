-- ---------------------------------------------------------------------------------------------
-- prune(KEYS[1] = P:seq; ARGV: P, window, nonce, count)
-- One bounded step of pruning the tag records (see prune in common.lua). Returns 1 when a pass
-- over every record is complete, else 0.
local ms, us = now()
local ns = open({}, false, nil, us)
if not ns then return 1 end
tick(ns, us)
local done = prune(tonumber(ARGV[4]) or 100, ms, ns)
if ns.dirty then write_state(ns) end
if done then return 1 end
return 0
