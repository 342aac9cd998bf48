-- ---------------------------------------------------------------------------------------------
-- delete(KEYS[1] = P:e:<key>; ARGV: P, window, nonce, key)
-- Removes the entry (whatever is stored under its key) and its index memberships. Returns 1 if it
-- was live (a get would have served it), else 0.
local ms, us = now()
local ns, _, blob = open({}, true, KEYS[1], us)
local e = parse(blob)
if not ns or not e or e.gen ~= ns.gen then
  redis.call('UNLINK', KEYS[1])
  return 0
end
local live = e.q >= ns.u
if not live then
  local recs = read_recs(split(e.tags))
  live = recs ~= nil
  for _, rec in ipairs(recs or {}) do
    if settle(rec, ms, ns.walked).stamp > e.q then live = false end
  end
end
drop(ARGV[4], e, ms, ns)
if live then return 1 end
return 0
