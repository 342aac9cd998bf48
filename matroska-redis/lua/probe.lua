-- probe(KEYS[1] = P:e:<key>; ARGV: P, window, key)
-- The remaining life of a live entry in ms, -1 if it does not expire, -2 if there is none. A stale
-- entry is removed, as get.lua does. Used by exists and ttl (the value is not sent back).
local got = redis.call('MGET', NS, KEYS[1])
local blob = got[2]
if not blob then return -2 end
local ns = read_ns(got[1])
local q, _, tags = parse(blob)
if ns == nil or q < ns.u then
  if not check(q, tags, ns) then
    drop(ARGV[3], tags, now())
    return -2
  end
end
return redis.call('PTTL', KEYS[1])
