-- ---------------------------------------------------------------------------------------------
-- get(KEYS[1] = P:e:<key>; ARGV: P, window, nonce, key)
-- The read for what the client's plain read of the entry and the namespace state cannot decide
-- alone: an entry filled before the safe mark or of another generation, a namespace that does not
-- exist yet (or was lost), or a miss while the client has no recent reading of the server's clock
-- (or the sequence number lags it by more than a tick). A hit returns the entry (the client takes
-- the value out of it); a miss returns the fill token {seq, generation, server time in ms}.
local k = ARGV[4]
local ms, us = now()
local ns, _, blob = open({}, true, KEYS[1], us)
tick(ns, us)
if blob then
  local e = parse(blob)
  if e == nil or e.gen ~= ns.gen then
    -- Unreadable, or filled in an older generation (before a clear or a loss): a miss.
    redis.call('UNLINK', KEYS[1])
  elseif e.q >= ns.u then
    if ns.dirty then write_state(ns) end
    return blob
  else
    local verdict = revalidate(k, e, ms, ns)
    if verdict == 'fresh' then
      if ns.dirty then write_state(ns) end
      return blob
    elseif verdict == 'broken' then
      bump(ns, true, true, us, ns)
      redis.call('UNLINK', KEYS[1])
    end
  end
end
if ns.dirty then write_state(ns) end
return { ns.n, ns.gen, ms }
