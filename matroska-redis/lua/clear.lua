-- clear(KEYS[1] = P:seq; ARGV: P, window, nonce)
-- Moves seq past everything and makes it the clear mark and the safe mark: from now on every
-- entry filled before is stale (reads check it and find it so) and every token issued before is
-- refused. sweep.lua then deletes the namespace's keys in bounded steps. Returns the mark.
local ms, us = now()
local ns = read_ns(redis.call('GET', NS)) or new_ns(us, ARGV[3])
local mark = math.max(ns.n + 1, us, ns.c + 1)
ns.n, ns.u, ns.c = mark, mark, mark
write_ns(ns)
return mark
