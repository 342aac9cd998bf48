-- reclaim(KEYS: sets aside; ARGV: P, window, budget, own (0/1))
-- Works through up to `budget` members of the given sets, in order, removing the stale entries.
-- With own = 1 (the client of the invalidation that set them aside), the sets stay marked as
-- being worked on. Returns {entries removed, sets that still have members...}.
local budget = tonumber(ARGV[3])
local ms = now()
local own = nil
if ARGV[4] == '1' then own = ms end
local removed, left = 0, {}
for _, r in ipairs(KEYS) do
  if budget > 0 then
    local n, looked, more = reclaim(r, budget, own, ms)
    removed = removed + n
    budget = budget - looked
    if more then left[#left + 1] = r end
  elseif redis.call('EXISTS', r) == 1 then
    left[#left + 1] = r
  end
end
local out = { removed }
for _, r in ipairs(left) do out[#out + 1] = r end
return out
