-- get(KEYS[1] = P:e:<key>; ARGV: P, window, key, nonce)
-- The read for what the client's plain MGET of the entry and P:seq cannot decide alone: an entry
-- filled before the safe mark, a namespace that does not exist yet, or a miss while the client
-- has no recent reading of the server's clock for the fill token.
-- A hit returns the entry (the client takes the value out of it); a miss returns the fill token
-- {seq, epoch, server time in ms}.
local k = ARGV[3]
local ms, us = now()
local got = redis.call('MGET', NS, KEYS[1])
local ns = read_ns(got[1])
if not ns then
  ns = new_ns(us, ARGV[4])
  write_ns(ns)
end
local blob = got[2]
if blob then
  local q, kind, tags = parse(blob)
  if q >= ns.u then return blob end
  local fresh, list, metas = check(q, tags, ns)
  if not fresh then
    -- Stale: a tag was invalidated (or the namespace cleared) after it was filled.
    drop(k, tags, ms)
  else
    -- Not stale. Put it back in any index it is missing from (an index may have been lost), then
    -- mark it as checked: filled "now", so that a plain MGET may serve it from now on.
    local need = HUGE
    if kind == 'e' then need = ms + math.max(redis.call('PTTL', KEYS[1]), 0) end
    local lost = false
    for i, t in ipairs(list) do
      if not redis.call('ZSCORE', index_key(t), k) then
        if index_add(t, k, need, metas[i], ms, false) then lost = true end
      end
    end
    if lost then
      ns.n = ns.n + 1
      ns.u = ns.n
      write_ns(ns)
    end
    redis.call('SETRANGE', KEYS[1], 0, pad(ns.n))
    return blob
  end
end
return { ns.n, ns.e, ms }
