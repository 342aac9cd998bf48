-- ---------------------------------------------------------------------------------------------
-- reclaim(KEYS: sets aside; ARGV: P, window, nonce, budget, own (0/1))
-- Works through up to `budget` members of the given sets, in order, removing the stale entries.
-- With own = 1 (the client of the invalidation that set them aside), the sets stay marked as
-- being worked on. Returns {entries removed, sets that still have members...}.
local budget = tonumber(ARGV[4]) or 1
local ms, us = now()
local own = nil
if ARGV[5] == '1' then own = ms end
local ns = open({}, false, nil, us)
local removed, left = 0, {}
if not ns then
  -- The namespace was lost: these sets belong to an older generation.
  for _, r in ipairs(KEYS) do
    redis.call('UNLINK', r)
    pending_rem(r)
  end
  return { 0 }
end
for _, r in ipairs(KEYS) do
  if budget > 0 then
    local n, looked, more = reclaim(r, budget, own, ms, ns)
    removed = removed + n
    budget = budget - looked
    if more then left[#left + 1] = r end
  elseif redis.call('EXISTS', r) == 1 then
    left[#left + 1] = r
  end
end
if ns.dirty then write_state(ns) end
local out = { removed }
for _, r in ipairs(left) do out[#out + 1] = r end
return out
