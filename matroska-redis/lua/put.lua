-- ---------------------------------------------------------------------------------------------
-- put(KEYS[1] = P:e:<key>; ARGV: P, window, nonce, key, value, ttl ms (0: none),
--     token seq ("": no token), token generation, token time ms, tag...)
-- Returns 1 if stored, 0 if refused as stale, 2 if refused because the token was issued later
-- than the server's clock allows (the client then drops its reading of the server's clock).
-- Nothing is written when the put is refused.
local k, ttl = ARGV[4], tonumber(ARGV[6]) or 0
local tags = {}
for i = 10, #ARGV do tags[#tags + 1] = ARGV[i] end
local ms, us = now()
local ns, recs, blob = open(tags, true, KEYS[1], us)
for i = 1, #tags do recs[i] = settle(recs[i], ms, ns.walked) end

-- The seq the entry is filled at: the token's (checked), or the current one.
local q
if ARGV[7] ~= '' then
  q = tonumber(ARGV[7])
  local issued = tonumber(ARGV[9])
  if q == nil or issued == nil then return 0 end
  -- Another generation: the namespace was cleared or lost since the miss. A token of the
  -- generation that a lost metadata hash ended stays good if it was issued after that
  -- generation's last invalidation (no stamp it could meet was lost).
  if ARGV[8] ~= ns.gen and not (ARGV[8] == ns.prev_gen and q >= ns.prev_inv) then return 0 end
  -- A seq this namespace has not reached: a token from the future.
  if q > ns.n then return 0 end
  -- Older than the fill window, on the sequence clock (which never goes backwards) ...
  if ns.n - q >= WINDOW_US then return 0 end
  -- ... and on the server's wall clock.
  if ms - issued >= WINDOW then return 0 end
  -- Issued later than the server's clock allows: a clock that stepped back, a crafted token.
  if issued > ms + FUTURE_MS then return 2 end
  -- A tag invalidated since the miss.
  for i = 1, #tags do
    if recs[i].stamp > q then return 0 end
  end
end
tick(ns, us)
if q == nil then q = ns.n end

-- Put replaces: the key leaves the indexes of the tags it no longer carries.
local old = parse(blob)
if old and old.gen == ns.gen then
  local keep = {}
  for _, t in ipairs(tags) do keep[t] = true end
  for _, t in ipairs(split(old.tags)) do
    if not keep[t] then unindex(t, k, ms, ns) end
  end
end

local need, kind = HUGE, 'p'
if ttl > 0 then need, kind = ms + ttl, 'e' end
local entry = encode(q, ns.gen, kind, tags, ARGV[5])
if ttl > 0 then
  redis.call('SET', KEYS[1], entry, 'PX', ttl)
else
  redis.call('SET', KEYS[1], entry)
end

-- Index it (a put that adds a member to an index also prunes a few dead ones), and prune twice as
-- many records as this put wrote.
local wrote = 0
for i, t in ipairs(tags) do
  if index_add(t, k, need, recs[i], ms, ns, true) then wrote = wrote + 1 end
end
prune_sample(2 * wrote, ms, ns)
if ns.dirty then write_state(ns) end
return 1
