-- delete(KEYS[1] = P:e:<key>; ARGV: P, window, key)
-- Removes the entry and its index memberships. Returns 1 if it was live (not stale), else 0.
local got = redis.call('MGET', NS, KEYS[1])
local blob = got[2]
if not blob then return 0 end
local ns = read_ns(got[1])
local q, _, tags = parse(blob)
local live = true
if ns == nil or q < ns.u then live = check(q, tags, ns) end
drop(ARGV[3], tags, now())
if live then return 1 end
return 0
