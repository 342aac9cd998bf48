-- ---------------------------------------------------------------------------------------------
-- invalidate(KEYS[1] = P:seq; ARGV: P, window, nonce, budget, grace ms, defer (0/1), tag...)
-- 1. seq moves past every value seen (seq + 1, the server time in µs, each tag's stamp), so it
--    never goes backwards;
-- 2. each tag is stamped with it: from now on put refuses tokens issued before, and reads refuse
--    entries filled before;
-- 3. the dependents are removed: at once while the budget (a number of index members) lasts;
--    an index with more members than the budget has left is set aside (RENAME, O(1)) for
--    reclaim.lua to work through in chunks, and the safe mark rises so that reads check those
--    entries meanwhile. An index that should exist but does not was lost: the safe mark rises
--    too, and the record keeps the stamp as long as its entries may live;
-- 4. with budget left: a chunk of a set abandoned by an earlier call (its client stopped working
--    on it more than `grace` ms ago) and a step of a wanted walk; and twice as many records as it
--    wrote are looked at for pruning.
-- Returns {entries removed, sets aside still to reclaim...}.
local budget, grace = tonumber(ARGV[4]) or 1, tonumber(ARGV[5]) or 30000
local defer = ARGV[6] == '1'
local tags = {}
for i = 7, #ARGV do tags[#tags + 1] = ARGV[i] end
local ms, us = now()
local ns, recs = open(tags, true, nil, us)

local seq = math.max(ns.n + 1, us)
for i = 1, #tags do
  recs[i] = settle(recs[i], ms, ns.walked)
  seq = math.max(seq, recs[i].stamp + 1)
end
ns.n, ns.inv = seq, seq
ns.dirty = true

local removed, aside = 0, {}
for i, t in ipairs(tags) do
  local idx, rec = index_key(t), recs[i]
  -- Its members, up to one more than the budget has left: they fit when no more than that came
  -- back (the count decides, never the order of members with equal scores).
  local list = members(idx, rec.index_until, budget)
  local n = #list
  if n == 0 then
    if rec.index_until and rec.index_until > ms then
      -- Lost: its entries cannot be found, reads must check them against the stamp.
      rec.outside_until = later(rec.outside_until, rec.index_until)
      rec.since = seq
      ns.u = seq
      if rec.outside_until == HUGE then want_walk(seq, ns) end
    end
  elseif n <= budget then
    redis.call('UNLINK', idx)
    removed = removed + sweep(list, t, seq, ms, ns)
    budget = budget - n
  else
    local r = P .. ':r:' .. int(seq) .. ':' .. t
    redis.call('RENAME', idx, r)
    -- A deferred set may be picked up by anyone at once; the others are this call's client's
    -- for as long as it keeps working on them.
    local score = ms
    if defer then score = 0 end
    pending_add(score, r)
    aside[#aside + 1] = r
    local x = rec.index_until
    rec.aside_until = later(rec.aside_until, x)
    rec.asides = rec.asides + 1
    rec.since = seq
    ns.u = seq
  end
  rec.stamp = seq
  rec.stamp_until = seq + WINDOW_US
  rec.index_until = nil
  write_rec(t, rec, ms, ns)
end

if budget > 0 then
  local found = redis.pcall('ZRANGEBYSCORE', PENDING, '-inf', ms - grace, 'LIMIT', 0, 1)
  local old = nil
  if type(found) == 'table' and found.err == nil then old = found[1] end
  for _, r in ipairs(aside) do
    if r == old then old = nil end
  end
  if old then
    local _, looked = reclaim(old, budget, nil, ms, ns)
    budget = budget - looked
  end
end
if budget > 0 then walk(math.min(budget, 100), ms, us, ns) end
prune_sample(2 * #tags, ms, ns)
if ns.dirty then write_state(ns) end

local out = { removed }
for _, r in ipairs(aside) do out[#out + 1] = r end
return out
