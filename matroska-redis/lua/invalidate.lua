-- invalidate(KEYS[1] = P:seq; ARGV: P, window, nonce, budget, grace ms, defer (0/1), tag...)
-- 1. seq moves past every value seen (seq + 1, the server time in µs, the clear mark, each tag's
--    stamp), so it never goes backwards, even if P:seq was lost;
-- 2. each tag is stamped with it: from now on put refuses tokens issued before, and get.lua
--    refuses entries filled before;
-- 3. the dependents are removed: at once while the budget lasts (then the stamp is needed for
--    the fill window only); a larger index is set aside (RENAME, O(1)) for reclaim.lua to work
--    through in chunks, and the safe mark rises so that reads check those entries meanwhile. An
--    index that should exist but does not was lost: the safe mark rises too, and the stamp lasts
--    as long as its entries may;
-- 4. with budget left, a chunk of a set abandoned by an earlier call (its client stopped working
--    on it more than `grace` ms ago) is reclaimed on the side.
-- Returns {entries removed, sets aside still to reclaim...}.
local budget, grace = tonumber(ARGV[4]), tonumber(ARGV[5])
local defer = ARGV[6] == '1'
local tags = {}
for i = 7, #ARGV do tags[#tags + 1] = ARGV[i] end
local ms, us = now()

local keys = { NS }
for i, t in ipairs(tags) do keys[i + 1] = stamp_key(t) end
local got = mget(keys)
local ns = read_ns(got[1]) or new_ns(us, ARGV[3])
local seq = math.max(ns.n + 1, us, ns.c + 1)
local metas = {}
for i = 1, #tags do
  metas[i] = settle(read_meta(got[i + 1]), ms)
  seq = math.max(seq, metas[i].s + 1)
end
ns.n = seq

local removed, aside = 0, {}
for i, t in ipairs(tags) do
  local idx, m = index_key(t), metas[i]
  local members = redis.call('ZRANGE', idx, 0, budget)
  if #members == 0 then
    if m.x and m.x > ms then
      -- Lost: its entries cannot be found, reads must check them against the stamp.
      m.l = later(m.l, m.x)
      ns.u = math.max(ns.u, seq)
    end
  elseif #members <= budget or members[#members] == '' then
    -- Every member fits in the budget (the sentinel, sorted last, came back too).
    redis.call('DEL', idx)
    removed = removed + sweep(members, t, seq, ms)
    budget = math.max(budget - #members, 0)
  else
    local r = P .. ':r:' .. int(seq) .. ':' .. t
    redis.call('RENAME', idx, r)
    -- A deferred set may be picked up by anyone at once; the others are this call's client's
    -- for as long as it keeps working on them.
    local score = ms
    if defer then score = 0 end
    redis.call('ZADD', PENDING, score, r)
    aside[#aside + 1] = r
    local x = m.x
    if x == nil then
      local pttl = redis.call('PTTL', r)
      if pttl < 0 then x = HUGE else x = ms + pttl end
    end
    m.l = later(m.l, x)
    ns.u = math.max(ns.u, seq)
    ns.p = '1'
  end
  m.s = seq
  m.x = nil
  write_meta(stamp_key(t), m, later(m.l, ms + WINDOW), false)
end

if budget > 0 and ns.p == '1' then
  local old = redis.call('ZRANGEBYSCORE', PENDING, '-inf', ms - grace, 'LIMIT', 0, 1)[1]
  for _, r in ipairs(aside) do
    if r == old then old = nil end
  end
  if old then
    reclaim(old, budget, nil, ms)
  elseif redis.call('EXISTS', PENDING) == 0 then
    ns.p = '0'
  end
end
write_ns(ns)

local out = { removed }
for _, r in ipairs(aside) do out[#out + 1] = r end
return out
