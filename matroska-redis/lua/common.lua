-- matroska-redis: helpers shared by every script. src/scripts.rs prepends this file to each one.
--
-- The key layout of a namespace (DESIGN.md section 6; src/keys.rs builds the same names on the
-- client side, and a test checks that the two agree). P, ARGV[1] of every script, is "{prefix}":
-- the braces make it a Redis Cluster hash tag, and since a prefix cannot contain "}", two
-- namespaces never share a key.
--
--   P:seq            the namespace's state, one string "n u c p epoch":
--                      n      the sequence number; starts at the server time in microseconds and
--                             never goes backwards, even when this key is lost
--                      u      the safe mark: an entry filled at u or later is in the index of
--                             each of its tags and not stale, so a plain MGET may serve it. Older
--                             entries are checked by get.lua first. u rises when an invalidation
--                             cannot remove every dependent at once, and when an index was lost.
--                      c      the clear mark: entries filled before it are gone
--                      p      1 while indexes set aside by invalidations may wait for reclaiming
--                      epoch  changes when the namespace is created again (restart without
--                             persistence, FLUSHALL, eviction): older fill tokens are refused
--   P:e:<key>        an entry, one string: q (20 digits, the seq it was filled at), "p"
--                    (persistent) or "e" (expiring), the length of its tags, ":", its tags (each
--                    after a NUL, and a final NUL), the value
--   P:t:<tag>        the tag's reverse index: a sorted set of keys scored by expiry in ms (+inf:
--                    persistent), and the sentinel member "" (+inf), so that it never silently
--                    empties: a missing index was never created, expired, was consumed by an
--                    invalidation, was dropped by unindex(), or was lost
--   P:s:<tag>        the tag's stamp and metadata, one string "S|x|l":
--                      S  the seq of its last invalidation (0: none)
--                      x  until when its index should exist (ms or "inf"; empty: none expected).
--                         An index missing before then was lost (evicted, deleted by hand).
--                      l  until when entries carrying the tag may exist outside its index (after
--                         a lost index or a large invalidation), so the stamp must last
--                    The key lives until max(x, l, the last invalidation + the fill window).
--   P:r:<seq>:<tag>  an index set aside by the invalidation at <seq>, reclaimed in bounded chunks
--   P:x:<mark>:<tag> an index taken by the clear at <mark>, drained in bounded chunks
--   P:pending        sorted set of the P:r: sets, scored by when their client last worked on them

local P = ARGV[1]
local WINDOW = tonumber(ARGV[2])
local NS = P .. ':seq'
local PENDING = P .. ':pending'
local HUGE = math.huge
local function entry_key(k) return P .. ':e:' .. k end
local function index_key(t) return P .. ':t:' .. t end
local function stamp_key(t) return P .. ':s:' .. t end

-- Sequence numbers and times exceed 2^31: format them without an exponent.
local function int(n) return string.format('%.0f', n) end
local function pad(n) return string.format('%020.0f', n) end

-- The server's clock: (milliseconds, microseconds). Expiry and fill windows use it, never a client's.
local function now()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), us
end

-- The namespace state (nil when the key is missing or unreadable).
local function read_ns(v)
  if not v then return nil end
  local n, u, c, p, e = string.match(v, '^(%d+) (%d+) (%d+) (%d) (%S+)$')
  if not n then return nil end
  return { n = tonumber(n), u = tonumber(u), c = tonumber(c), p = p, e = e }
end

local function write_ns(ns)
  redis.call('SET', NS, int(ns.n) .. ' ' .. int(ns.u) .. ' ' .. int(ns.c) .. ' ' .. ns.p .. ' ' .. ns.e)
end

-- A namespace created now (first use, or after its state was lost): seq starts at the server time,
-- above every earlier seq; everything already stored is checked before it is served (u = n); sets
-- set aside earlier may be pending.
local function new_ns(us, nonce)
  return { n = us, u = us, c = 0, p = '1', e = int(us) .. '-' .. nonce }
end

-- Times: nil (none), a number of ms, or HUGE (forever).
local function time_of(s)
  if s == nil or s == '' then return nil end
  if s == 'inf' then return HUGE end
  return tonumber(s)
end
local function time_str(t)
  if t == nil then return '' end
  if t == HUGE then return 'inf' end
  return int(t)
end
local function later(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return math.max(a, b)
end

-- A tag's metadata (see the layout above). `found`: whether the key existed.
local function read_meta(v)
  if not v then return { s = 0, found = false } end
  local s, x, l = string.match(v, '^(%d+)|([^|]*)|(.*)$')
  if not s then return { s = 0, found = true } end
  return { s = tonumber(s), x = time_of(x), l = time_of(l), found = true }
end

-- Forgets an `l` that has passed: the entries it was about have expired.
local function settle(m, ms)
  if m.l and m.l ~= HUGE and m.l <= ms then m.l = nil end
  return m
end

-- Writes a tag's metadata, to live until `till` (ms, or HUGE). With `keep`, the key's current
-- life is never shortened.
local function write_meta(key, m, till, keep)
  local v = int(m.s) .. '|' .. time_str(m.x) .. '|' .. time_str(m.l)
  if till == HUGE then
    redis.call('SET', key, v)
  elseif keep and m.found then
    redis.call('SET', key, v, 'KEEPTTL')
    redis.call('PEXPIREAT', key, int(till), 'GT')
  else
    redis.call('SET', key, v, 'PXAT', int(till))
  end
  m.found = true
end

-- MGET in slices (Lua's unpack has a stack limit). A missing key reads as false.
local function mget(keys)
  if #keys <= 1000 then return redis.call('MGET', unpack(keys)) end
  local out = {}
  for i = 1, #keys, 1000 do
    local part = redis.call('MGET', unpack(keys, i, math.min(i + 999, #keys)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end

local function unlink(keys)
  for i = 1, #keys, 1000 do redis.call('UNLINK', unpack(keys, i, math.min(i + 999, #keys))) end
end

-- An entry: (q, kind "p"/"e", tags as stored, offset of the value).
local function parse(blob)
  local colon = string.find(blob, ':', 22, true)
  local n = tonumber(string.sub(blob, 22, colon - 1))
  return tonumber(string.sub(blob, 1, 20)), string.sub(blob, 21, 21),
    string.sub(blob, colon + 1, colon + n), colon + n + 1
end

local function split(tags)
  local out = {}
  for t in string.gmatch(tags, '%z([^%z]+)') do out[#out + 1] = t end
  return out
end

-- Whether an entry filled at q with these tags (as stored) is not stale: neither the clear mark nor
-- the stamp of any of its tags is newer. Also returns the tags' metadata.
local function check(q, tags, ns)
  local list = split(tags)
  local metas = {}
  local fresh = ns == nil or q >= ns.c
  if #list > 0 then
    local keys = {}
    for i, t in ipairs(list) do keys[i] = stamp_key(t) end
    local vals = mget(keys)
    for i = 1, #list do
      metas[i] = read_meta(vals[i])
      if metas[i].s > q then fresh = false end
    end
  end
  return fresh, list, metas
end

-- Index lifetimes only grow: an index must outlive its entries. Extended by a quarter more, so that
-- a stream of puts with the same TTL does not re-expire it every time.
local function target(need, ms)
  if need == HUGE then return HUGE end
  return need + math.floor((need - ms) / 4)
end

-- Puts key k, whose entry expires at `need` (ms, or HUGE), in the index of tag t; m is the tag's
-- metadata, read before. Prunes a few expired members when `prune` is set. Returns true if the
-- index turned out to have been lost.
local function index_add(t, k, need, m, ms, prune)
  local idx = index_key(t)
  local score = 'inf'
  if need ~= HUGE then score = int(need) end
  local added = redis.call('ZADD', idx, 'inf', '', score, k)
  local lost = false
  if added == 2 or m.x == nil or m.x < need then
    local x
    if added == 2 then
      -- A new index. If one was expected to exist until later, it was lost: its entries may be
      -- anywhere, and the stamp must last as long as they may.
      if m.x and m.x > ms then
        lost = true
        m.l = later(m.l, m.x)
      end
      x = target(need, ms)
      if x ~= HUGE then redis.call('PEXPIREAT', idx, int(x)) end
    else
      if m.x == nil then
        -- The metadata was lost, the index was not: read its expiry.
        local pttl = redis.call('PTTL', idx)
        if pttl < 0 then x = HUGE else x = ms + pttl end
      else
        x = m.x
      end
      if x < need then
        x = target(need, ms)
        if x == HUGE then redis.call('PERSIST', idx) else redis.call('PEXPIREAT', idx, int(x)) end
      end
    end
    m.x = x
    write_meta(stamp_key(t), m, later(x, m.l), true)
  end
  if prune and added == 1 then
    -- Members whose entries have expired: remove a few, so that dead members cannot accumulate.
    local dead = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. int(ms), 'LIMIT', 0, 8)
    if #dead > 0 then redis.call('ZREM', idx, unpack(dead)) end
  end
  return lost
end

-- Takes key k out of the index of tag t. An index left with only its sentinel is dropped, and
-- the metadata notes that none is expected any more (and goes when it has nothing left to say).
local function unindex(t, k, ms)
  local idx = index_key(t)
  if redis.call('ZREM', idx, k) == 1 and redis.call('ZCARD', idx) == 1 then
    redis.call('DEL', idx)
    local skey = stamp_key(t)
    local m = settle(read_meta(redis.call('GET', skey)), ms)
    m.x = nil
    if m.s == 0 and m.l == nil then
      redis.call('DEL', skey)
    else
      write_meta(skey, m, later(m.l, ms + WINDOW), false)
    end
  end
end

-- Removes the entry under key k (with these tags, as stored) and its index memberships.
local function drop(k, tags, ms)
  redis.call('UNLINK', entry_key(k))
  for _, t in ipairs(split(tags)) do unindex(t, k, ms) end
end

-- Among `keys` (members of tag t's index, or of a set aside), removes the entries that still
-- carry t and were filled before `stamp`; a key deleted, re-put without t, or filled again after
-- the stamp is left alone. A persistent entry also leaves its other tags' indexes now; an expiring
-- one's memberships there are pruned once its expiry passes (index_add) or go with the index.
-- Returns how many entries were removed.
local function sweep(keys, t, stamp, ms)
  local ekeys, names = {}, {}
  for _, k in ipairs(keys) do
    if k ~= '' then
      ekeys[#ekeys + 1] = entry_key(k)
      names[#names + 1] = k
    end
  end
  if #ekeys == 0 then return 0 end
  local blobs = mget(ekeys)
  local needle = '\0' .. t .. '\0'
  local doomed, persistent = {}, {}
  for i = 1, #ekeys do
    local blob = blobs[i]
    if blob then
      local q, kind, tags = parse(blob)
      if q < stamp and string.find(tags, needle, 1, true) then
        doomed[#doomed + 1] = ekeys[i]
        if kind == 'p' then persistent[#persistent + 1] = { names[i], tags } end
      end
    end
  end
  unlink(doomed)
  for _, e in ipairs(persistent) do
    for _, o in ipairs(split(e[2])) do
      if o ~= t then unindex(o, e[1], ms) end
    end
  end
  return #doomed
end

-- Reclaims up to `budget` members of the set aside r (P:r:<seq>:<tag>). When `own_ms` is given,
-- the set is marked as worked on at that time, so that other calls leave it to this client.
-- Returns (entries removed, members looked at, whether members remain).
local function reclaim(r, budget, own_ms, ms)
  local rest = string.sub(r, #P + 4)
  local colon = string.find(rest, ':', 1, true)
  if not colon then return 0, 0, false end
  local stamp, t = tonumber(string.sub(rest, 1, colon - 1)), string.sub(rest, colon + 1)
  local popped = redis.call('ZPOPMIN', r, budget)
  local keys = {}
  for i = 1, #popped, 2 do keys[#keys + 1] = popped[i] end
  local removed = sweep(keys, t, stamp, ms)
  if redis.call('EXISTS', r) == 1 then
    if own_ms then redis.call('ZADD', PENDING, own_ms, r) end
    return removed, #keys, true
  end
  redis.call('ZREM', PENDING, r)
  return removed, #keys, false
end

-- ---------------------------------------------------------------------------------------------
