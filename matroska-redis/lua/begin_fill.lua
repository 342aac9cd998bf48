-- ---------------------------------------------------------------------------------------------
-- begin_fill(KEYS[1] = P:l:<key>; ARGV: P, window, nonce, lease in ms (0: none))
-- A fill token for a key whatever is stored under it (a refresh ahead of expiry, the reload of a
-- fail-safe fallback): the same {seq, generation, server time in ms} a miss of `get` returns,
-- from the same namespace state, so `put` checks it exactly as a miss's token. With a lease, the
-- token is handed out only to the caller that sets the key's lease key (SET NX PX): while another
-- caller's lease runs, the reply is 0 and nothing changes. A lease is never released early; it
-- expires with its key, also when its holder died. Leases order nothing: a lost one costs at most
-- a second refresh, whose fill is token-checked.
local lease = tonumber(ARGV[4]) or 0
local ms, us = now()
local ns = open({}, true, nil, us)
tick(ns, us)
if lease > 0 and not redis.call('SET', KEYS[1], NONCE, 'NX', 'PX', int(lease)) then
  if ns.dirty then write_state(ns) end
  return 0
end
if ns.dirty then write_state(ns) end
return { ns.n, ns.gen, ms }
