-- ---------------------------------------------------------------------------------------------
-- probe(KEYS[1] = P:e:<key>; ARGV: P, window, nonce, key)
-- The remaining life of a live entry in ms, -1 if it does not expire, -2 if there is none. Live
-- means what get decides: an unreadable entry, one of another generation and a stale one are
-- removed and reported missing. Used by exists and ttl (the value is not sent back).
local ms, us = now()
local ns, _, blob = open({}, true, KEYS[1], us)
if not blob then return -2 end
local e = parse(blob)
if not ns or not e or e.gen ~= ns.gen then
  redis.call('UNLINK', KEYS[1])
  return -2
end
if e.q < ns.u then
  local recs = read_recs(split(e.tags))
  local live = recs ~= nil
  for _, rec in ipairs(recs or {}) do
    if settle(rec, ms, ns.walked).stamp > e.q then live = false end
  end
  if not live then
    drop(ARGV[4], e, ms, ns)
    return -2
  end
end
return redis.call('PTTL', KEYS[1])
