-- put(KEYS[1] = P:e:<key>; ARGV: P, window, key, nonce, value, ttl ms (0: none),
--     token seq ("": no token), token epoch, token time ms, tag...)
-- Returns 1 if stored, 0 if refused as stale (then nothing was written).
local k, ttl = ARGV[3], tonumber(ARGV[6])
local tags = {}
for i = 10, #ARGV do tags[#tags + 1] = ARGV[i] end
local ms, us = now()

-- One read for everything: the namespace, the entry being replaced, the tags' stamps.
local keys = { NS, KEYS[1] }
for i, t in ipairs(tags) do keys[i + 2] = stamp_key(t) end
local got = mget(keys)
local ns = read_ns(got[1])
local metas = {}
for i = 1, #tags do metas[i] = read_meta(got[i + 2]) end

-- The seq the entry is filled at: the token's (checked), or the current one.
local q
if ARGV[7] ~= '' then
  q = tonumber(ARGV[7])
  -- The namespace was lost or created again since the miss (restart, FLUSHALL, eviction).
  if ns == nil or ns.e ~= ARGV[8] then return 0 end
  -- The token is older than the fill window (on the server's clock).
  if ms - tonumber(ARGV[9]) >= WINDOW then return 0 end
  -- The namespace was cleared, or a tag invalidated, since the miss.
  if ns.c > q then return 0 end
  for i = 1, #tags do
    if metas[i].s > q then return 0 end
  end
else
  if ns == nil then
    ns = new_ns(us, ARGV[4])
    write_ns(ns)
  end
  q = ns.n
end

-- Put replaces: the key leaves the indexes of the tags it no longer carries.
if got[2] then
  local _, _, old = parse(got[2])
  local keep = {}
  for _, t in ipairs(tags) do keep[t] = true end
  for _, t in ipairs(split(old)) do
    if not keep[t] then unindex(t, k, ms) end
  end
end

local stored = ''
if #tags > 0 then stored = '\0' .. table.concat(tags, '\0') .. '\0' end
local need = HUGE
if ttl > 0 then
  need = ms + ttl
  redis.call('SET', KEYS[1], pad(q) .. 'e' .. #stored .. ':' .. stored .. ARGV[5], 'PX', ttl)
else
  redis.call('SET', KEYS[1], pad(q) .. 'p' .. #stored .. ':' .. stored .. ARGV[5])
end

-- Index it (a put that adds a member to an index also prunes a few expired ones).
local lost = false
for i, t in ipairs(tags) do
  if index_add(t, k, need, metas[i], ms, true) then lost = true end
end
if lost then
  -- An index was lost: entries filled until now may be missing from it, so they are checked
  -- before they are served (the safe mark rises past them).
  ns.n = ns.n + 1
  ns.u = ns.n
  write_ns(ns)
end
return 1
