-- matroska-redis: helpers shared by every script; src/scripts.rs prepends this file to each one.
-- PROTOCOL.md (in the crate) describes every key and field, who writes it and why; the comments
-- here say what each helper does. ARGV[1] of every script is P = "{prefix}", ARGV[2] the fill
-- window in ms, ARGV[3] the client's 8-hex-digit nonce; each script's own arguments follow.

local P = ARGV[1]
local WINDOW = tonumber(ARGV[2]) or 60000
local NONCE = ARGV[3]
if type(NONCE) ~= 'string' or not string.find(NONCE, '^%x%x%x%x%x%x%x%x$') then
  NONCE = '00000000'
end
local STATE = P .. ':seq'
local META = P .. ':meta'
local PENDING = P .. ':pending'
local HUGE = math.huge
-- The fill window on the sequence clock (microseconds), and how far the sequence number may lag
-- the server's clock before a script moves it on (a hundredth of the window).
local WINDOW_US = WINDOW * 1000
local TICK_US = WINDOW * 10
-- How far in the future (server clock) a fill token may have been issued: a client's estimate of
-- the server's clock is from below, so a later token means a clock that stepped back.
local FUTURE_MS = 1000
-- The entry header: q (20 digits), generation (20 digits, 8 hex digits), kind, tags length.
local HEADER = 57

local function entry_key(k) return P .. ':e:' .. k end
local function index_key(t) return P .. ':t:' .. t end
local function starts(s, prefix) return string.sub(s, 1, #prefix) == prefix end

-- Sequence numbers and times exceed 2^31: format them without an exponent.
local function int(n) return string.format('%.0f', n) end
local function pad(n) return string.format('%020.0f', n) end

-- The server's clock: (milliseconds, microseconds).
local function now()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return math.floor(us / 1000), us
end

-- Times in records: nil (none), a number of ms, or HUGE (forever).
local function time_of(s)
  if s == '' then return nil end
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

-- MGET in slices (Lua's unpack has a stack limit). A missing key, or one of another type, reads
-- as false.
local function mget(keys)
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

-- ---------------------------------------------------------------------------------------------
-- The namespace state (P:seq), one string the client reads with the entry in one MGET:
-- "seq=<n> safe=<u> gen=<generation> inv=<seq of the last invalidation> prev=<generation>:<inv>"
-- (prev: the generation a lost metadata hash ended, and its last invalidation; "-" if none).

local GEN = '^' .. string.rep('%d', 20) .. string.rep('%x', 8) .. '$'

local function read_state(v)
  if type(v) ~= 'string' then return nil end
  local n, u, gen, inv, prev =
    string.match(v, '^seq=(%d+) safe=(%d+) gen=(%w+) inv=(%d+) prev=([%w:-]+)$')
  if not n or #n > 19 or #u > 19 or #inv > 19 or not string.find(gen, GEN) then return nil end
  local ns = { n = tonumber(n), u = tonumber(u), gen = gen, inv = tonumber(inv), dirty = false }
  local pgen, pinv = string.match(prev, '^(%w+):(%d+)$')
  if pgen and string.find(pgen, GEN) and #pinv <= 19 then
    ns.prev_gen, ns.prev_inv = pgen, tonumber(pinv)
  end
  return ns
end

local function write_state(ns)
  local prev = '-'
  if ns.prev_gen then prev = ns.prev_gen .. ':' .. int(ns.prev_inv) end
  redis.call('SET', STATE, 'seq=' .. int(ns.n) .. ' safe=' .. int(ns.u) .. ' gen=' .. ns.gen
    .. ' inv=' .. int(ns.inv) .. ' prev=' .. prev)
  ns.dirty = false
end

-- Moves the sequence number on to the server's clock when it lags by more than a tick, so that it
-- keeps measuring time (fill tokens are aged on it, stamps pruned by it) without a write per call.
local function tick(ns, us)
  if us > ns.n + TICK_US then
    ns.n = us
    ns.dirty = true
  end
end

-- ---------------------------------------------------------------------------------------------
-- Tag records (fields of P:meta): "stamp|stamp_until|index_until|outside_until|aside_until|asides|since".

local function is_time(s) return s == '' or s == 'inf' or string.find(s, '^%d+$') ~= nil end

local function read_rec(v)
  if v == false or v == nil then return { stamp = 0, asides = 0, since = 0 } end
  local s, su, x, o, a, n, since =
    string.match(v, '^(%d+)|(%d*)|([%dinf]*)|([%dinf]*)|([%dinf]*)|(%d+)|(%d+)$')
  if not s or not (is_time(x) and is_time(o) and is_time(a)) then return nil end
  return {
    stamp = tonumber(s), stamp_until = tonumber(su), index_until = time_of(x),
    outside_until = time_of(o), aside_until = time_of(a), asides = tonumber(n),
    since = tonumber(since),
  }
end

-- Forgets what a record no longer needs to say: times that have passed, and what a completed walk
-- of the namespace has made true everywhere: a walk that started at seq `walked` or later looked
-- at every entry that was outside the tag's index (or in its sets aside) when `since` was
-- recorded, and re-indexed or removed it. (`since` is always a seq no walk had started at
-- before it was recorded: see lost_index and set_gone.)
local function settle(rec, ms, walked)
  if rec.since <= walked then
    rec.outside_until, rec.aside_until, rec.asides = nil, nil, 0
  end
  if rec.outside_until and rec.outside_until <= ms then rec.outside_until = nil end
  if rec.aside_until and rec.aside_until <= ms then rec.aside_until = nil end
  if rec.index_until and rec.index_until <= ms then rec.index_until = nil end
  return rec
end

-- Whether the record still protects something: a stamp that unexpired tokens may meet (on the
-- sequence clock), an index that should exist, entries outside the index or in sets aside.
local function needed(rec, ms, ns)
  return (rec.stamp > 0 and rec.stamp_until ~= nil and rec.stamp_until > ns.n)
    or (rec.index_until ~= nil and rec.index_until > ms)
    or (rec.outside_until ~= nil and rec.outside_until > ms)
    or (rec.aside_until ~= nil and rec.aside_until > ms)
end

local function write_rec(t, rec, ms, ns)
  if needed(rec, ms, ns) then
    local su = ''
    if rec.stamp_until then su = int(rec.stamp_until) end
    redis.call('HSET', META, t, int(rec.stamp) .. '|' .. su .. '|' .. time_str(rec.index_until)
      .. '|' .. time_str(rec.outside_until) .. '|' .. time_str(rec.aside_until) .. '|'
      .. int(rec.asides) .. '|' .. int(rec.since))
  else
    redis.call('HDEL', META, t)
  end
end

-- ---------------------------------------------------------------------------------------------
-- Opening the namespace: the state and the metadata must both exist, be readable and name the
-- same generation; otherwise one of them was lost (evicted, deleted, a restart) or written by
-- someone else, and the namespace starts a new generation: every entry filled before is a miss,
-- every record and index of the old generation is ignored, and every fill token issued before is
-- refused, except (when only the metadata was lost, and the state says when the last
-- invalidation was) tokens issued after the last invalidation of the old generation: no stamp
-- they could have met was lost.

-- A new generation. `old` is the previous state, if readable; `carry` whether tokens of the old
-- generation issued after its last invalidation stay good (the metadata was lost, not the state,
-- and this is no clear); `had_data` whether anything of the old generation may be left (then a
-- walk removes it); `into`, if given, is the namespace table to reset in place.
local function bump(old, carry, had_data, us, into)
  local n = us
  if old and old.n >= n then n = old.n + 1 end
  local ns = into or {}
  ns.n, ns.u, ns.gen, ns.inv, ns.walked = n, n, pad(n) .. NONCE, n, 0
  ns.prev_gen, ns.prev_inv = nil, nil
  if carry and old then ns.prev_gen, ns.prev_inv = old.gen, old.inv end
  ns.walk, ns.wanted = nil, 0
  write_state(ns)
  redis.call('UNLINK', META)
  redis.call('HSET', META, 'gen', ns.gen)
  if had_data then
    redis.call('HSET', META, 'walk_wanted', int(n))
    ns.wanted = n
  end
  return ns
end

-- Reads the state (and the entry at `ekey`, if given) and the records of `tags`. Returns the
-- namespace (nil when it is unusable and `create` is false), the records (one per tag) and the
-- entry's value (false if none, or not a string).
local function open(tags, create, ekey, us)
  local keys = { STATE }
  if ekey then keys[2] = ekey end
  local got = redis.call('MGET', unpack(keys))
  local ns = read_state(got[1])
  local blob = got[2] or false
  local fields = { 'gen', 'walked', 'walk', 'walk_wanted' }
  for i, t in ipairs(tags) do fields[i + 4] = t end
  local h = redis.pcall('HMGET', META, unpack(fields))
  local readable = type(h) == 'table' and h.err == nil
  local recs = {}
  local ok = ns ~= nil and readable and h[1] == ns.gen
  if ok then
    ns.walked = tonumber(h[2]) or 0
    ns.walk, ns.wanted = h[3] or nil, tonumber(h[4]) or 0
    for i = 1, #tags do
      recs[i] = read_rec(h[i + 4])
      if not recs[i] then ok = false end
    end
  end
  if ok then return ns, recs, blob end
  if not create then return nil, nil, blob end
  local had_data = got[1] ~= false or not readable or h[1] ~= false
  ns = bump(ns, true, had_data, us)
  for i = 1, #tags do recs[i] = read_rec(false) end
  return ns, recs, blob
end

-- The records of `tags` in the open namespace (nil if one does not parse).
local function read_recs(tags)
  if #tags == 0 then return {} end
  local h = redis.call('HMGET', META, unpack(tags))
  local recs = {}
  for i = 1, #tags do
    recs[i] = read_rec(h[i])
    if not recs[i] then return nil end
  end
  return recs
end

local function read_one(t)
  return read_rec(redis.call('HGET', META, t))
end

-- Asks for a walk of the namespace (see walk below) that starts at `seq` or later.
local function want_walk(seq, ns)
  if seq > ns.wanted then
    ns.wanted = seq
    redis.call('HSET', META, 'walk_wanted', int(seq))
  end
end

-- ---------------------------------------------------------------------------------------------
-- Entries (P:e:<key>): q (20 digits: the seq it was filled at), the generation (28 characters),
-- the kind ("p" persistent, "e" expiring), the length of its tags (8 digits), its tags (each
-- after a NUL, and a final NUL), the value. Anything else is foreign: parse returns nil.

local ENTRY = '^(' .. string.rep('%d', 20) .. ')(' .. string.rep('%d', 20) .. string.rep('%x', 8)
  .. ')([pe])(' .. string.rep('%d', 8) .. ')'

local function parse(blob)
  if type(blob) ~= 'string' or #blob < HEADER then return nil end
  local q, gen, kind, len = string.match(string.sub(blob, 1, HEADER), ENTRY)
  if not q then return nil end
  local n = tonumber(len)
  if HEADER + n > #blob then return nil end
  local tags = string.sub(blob, HEADER + 1, HEADER + n)
  if n > 0 and (string.byte(tags, 1) ~= 0 or string.byte(tags, n) ~= 0) then return nil end
  return { q = tonumber(q), gen = gen, kind = kind, tags = tags }
end

local function split(tags)
  local out = {}
  for t in string.gmatch(tags, '%z([^%z]+)') do out[#out + 1] = t end
  return out
end

local function encode(q, gen, kind, tags, value)
  local stored = ''
  if #tags > 0 then stored = '\0' .. table.concat(tags, '\0') .. '\0' end
  return pad(q) .. gen .. kind .. string.format('%08d', #stored) .. stored .. value
end

-- ---------------------------------------------------------------------------------------------
-- Reverse indexes (P:t:<tag>): sorted sets of keys scored by expiry in ms (+inf: persistent). The
-- tag's record says whether one should exist (`index_until`): an index no record expects was left
-- by an older generation, or written by someone else, and is removed where it is found.

-- Up to `limit` + 1 members of the index at `idx` (all of them when it has no more than `limit`),
-- for a record expecting an index until `x` (nil: none); an index of another type, or one no
-- record expects, is removed (none).
local function members(idx, x, limit)
  local list = redis.pcall('ZRANGE', idx, 0, limit)
  if type(list) ~= 'table' or list.err then
    redis.call('UNLINK', idx)
    return {}
  end
  if #list > 0 and x == nil then
    redis.call('UNLINK', idx)
    return {}
  end
  return list
end

-- Index lifetimes only grow: an index must outlive its entries. Extended by a quarter more, so that
-- a stream of puts with the same TTL does not re-expire it every time.
local function target(need, ms)
  if need == HUGE then return HUGE end
  return need + math.floor((need - ms) / 4)
end

-- An index that the record says should exist is missing: it was lost (evicted, deleted by hand).
-- The entries it listed may be anywhere, so reads check entries filled until now (the safe mark
-- rises) and the record keeps the tag's stamp as long as those entries may live.
local function lost_index(rec, ns)
  ns.n = ns.n + 1
  ns.u = ns.n
  ns.dirty = true
  rec.outside_until = later(rec.outside_until, rec.index_until)
  rec.since = ns.n
  if rec.outside_until == HUGE then want_walk(ns.n, ns) end
end

-- Puts key k, whose entry expires at `need` (ms, or HUGE), in the index of tag t; rec is the tag's
-- record, read and settled before (and written here when it changes). Prunes a few dead members
-- when `prune` is set. Returns whether the record changed.
local function index_add(t, k, need, rec, ms, ns, prune)
  local idx = index_key(t)
  local score = 'inf'
  if need ~= HUGE then score = int(need) end
  local x = rec.index_until
  local added = redis.pcall('ZADD', idx, score, k)
  if type(added) ~= 'number' then
    -- A key of another type: foreign.
    redis.call('UNLINK', idx)
    added = redis.call('ZADD', idx, score, k)
  end
  -- A new index holds k alone; an existing one held members before (k among them if added is 0).
  local new = added == 1 and redis.call('ZCARD', idx) == 1
  if x == nil and not new then
    -- An index no record expects: left by an older generation, or foreign. Start it anew.
    redis.call('UNLINK', idx)
    redis.call('ZADD', idx, score, k)
    new = true
  end
  local changed = false
  if new then
    -- If one was expected until later, it was lost.
    if x and x > ms then lost_index(rec, ns) end
    x = target(need, ms)
    if x ~= HUGE then redis.call('PEXPIREAT', idx, int(x)) end
    changed = true
  else
    if x < need then
      x = target(need, ms)
      if x == HUGE then redis.call('PERSIST', idx) else redis.call('PEXPIREAT', idx, int(x)) end
      changed = true
    end
    if prune and added == 1 then
      -- Dead members: a few whose entries have expired, and two picked at random whose entries
      -- are gone (evicted, or deleted by another tag's invalidation): removed, so that dead
      -- members cannot accumulate in an index that is never invalidated. The index keeps k.
      local dead = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. int(ms), 'LIMIT', 0, 8)
      for _, m in ipairs(redis.call('ZRANDMEMBER', idx, 2)) do
        if m ~= k and redis.call('EXISTS', entry_key(m)) == 0 then dead[#dead + 1] = m end
      end
      if #dead > 0 then redis.call('ZREM', idx, unpack(dead)) end
    end
  end
  if changed then
    rec.index_until = x
    write_rec(t, rec, ms, ns)
  end
  return changed
end

-- Takes key k out of the index of tag t. An index left empty is gone (Redis deletes an empty
-- sorted set), and the record notes that none is expected any more (and goes when it has nothing
-- left to say).
local function unindex(t, k, ms, ns)
  local idx = index_key(t)
  if redis.pcall('ZREM', idx, k) == 1 and redis.call('EXISTS', idx) == 0 then
    local rec = read_one(t)
    if rec then
      rec = settle(rec, ms, ns.walked)
      rec.index_until = nil
      write_rec(t, rec, ms, ns)
    end
  end
end

-- Removes the entry under key k (parsed as e; nil: unreadable) and its index memberships.
local function drop(k, e, ms, ns)
  redis.call('UNLINK', entry_key(k))
  if e and e.gen == ns.gen then
    for _, t in ipairs(split(e.tags)) do unindex(t, k, ms, ns) end
  end
end

-- Among `keys` (members of tag t's index, or of a set aside), removes the entries that still
-- carry t and were filled before `stamp`, and every unreadable entry or one of an older
-- generation; an entry deleted, re-put without t, or filled again after the stamp is left alone.
-- A persistent entry also leaves its other tags' indexes now; an expiring one's memberships there
-- are pruned once its expiry passes (index_add) or go with the index. Returns how many entries
-- carrying t were removed.
local function sweep(keys, t, stamp, ms, ns)
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
  local doomed, persistent, removed = {}, {}, 0
  for i = 1, #ekeys do
    if blobs[i] then
      local e = parse(blobs[i])
      if e == nil or e.gen ~= ns.gen then
        doomed[#doomed + 1] = ekeys[i]
      elseif e.q < stamp and string.find(e.tags, needle, 1, true) then
        doomed[#doomed + 1] = ekeys[i]
        removed = removed + 1
        if e.kind == 'p' then persistent[#persistent + 1] = { names[i], e.tags } end
      end
    end
  end
  unlink(doomed)
  for _, p in ipairs(persistent) do
    for _, o in ipairs(split(p[2])) do
      if o ~= t then unindex(o, p[1], ms, ns) end
    end
  end
  return removed
end

-- Whether the entry under key k (parsed as e, filled before the safe mark) is fresh: neither it
-- nor any of its tags was invalidated since it was filled. A fresh one is put back in any index of
-- this generation it is missing from and marked as checked (filled "now": the plain MGET may serve
-- it from now on); a stale one is removed. Returns "fresh", "stale" or "broken" (a record does not
-- parse: the caller starts a new generation).
local function revalidate(k, e, ms, ns)
  local list = split(e.tags)
  local recs = read_recs(list)
  if not recs then return 'broken' end
  for i = 1, #list do
    if settle(recs[i], ms, ns.walked).stamp > e.q then
      drop(k, e, ms, ns)
      return 'stale'
    end
  end
  local ekey = entry_key(k)
  local need = HUGE
  if e.kind == 'e' then need = ms + math.max(redis.call('PTTL', ekey), 0) end
  for i, t in ipairs(list) do index_add(t, k, need, recs[i], ms, ns, false) end
  redis.call('SETRANGE', ekey, 0, pad(ns.n))
  return 'fresh'
end

-- ---------------------------------------------------------------------------------------------
-- Sets aside (P:r:<seq>:<tag>): an index renamed away by the invalidation at <seq>, listed in
-- P:pending (scored by when its client last worked on it) until reclaimed. One whose <seq> is below
-- the start of the current generation belongs to an older one.

local function pending_rem(r)
  local n = redis.pcall('ZREM', PENDING, r)
  return n == 1
end

local function pending_add(score, r)
  local ok = redis.pcall('ZADD', PENDING, score, r)
  if type(ok) == 'table' and ok.err then
    redis.call('UNLINK', PENDING)
    redis.call('ZADD', PENDING, score, r)
  end
end

local function set_name(r)
  local seq, t = string.match(string.sub(r, #P + 4), '^(%d+):(.+)$')
  if not seq or not starts(r, P .. ':r:') then return nil end
  return tonumber(seq), t
end

-- The seq the current generation started at.
local function gen_start(ns) return tonumber(string.sub(ns.gen, 1, 20)) end

-- The set aside r is gone: drained (`lost` false) or lost before it was drained (evicted, deleted
-- by hand). Updates its tag's record; a lost set's entries are outside every index from now on.
local function set_gone(t, lost, ms, ns)
  local rec = read_one(t)
  if not rec then return end
  rec = settle(rec, ms, ns.walked)
  if rec.asides > 0 then
    rec.asides = rec.asides - 1
    if lost then
      rec.outside_until = later(rec.outside_until, rec.aside_until)
      ns.n = ns.n + 1
      ns.dirty = true
      rec.since = ns.n
      if rec.outside_until == HUGE then want_walk(ns.n, ns) end
    end
    if rec.asides == 0 then rec.aside_until = nil end
    write_rec(t, rec, ms, ns)
  end
end

-- Reclaims up to `budget` members of the set aside r. When `own_ms` is given, the set is marked as
-- worked on at that time, so that other calls leave it to this client. Returns (entries removed,
-- members looked at, whether members remain).
local function reclaim(r, budget, own_ms, ms, ns)
  local stamp, t = set_name(r)
  if not stamp then
    pending_rem(r)
    return 0, 0, false
  end
  if stamp < gen_start(ns) or redis.call('EXISTS', r) == 0 then
    -- Of an older generation, or gone: drained by another client, or lost.
    local listed = pending_rem(r)
    if redis.call('EXISTS', r) == 1 then
      redis.call('UNLINK', r)
    elseif listed and stamp >= gen_start(ns) then
      set_gone(t, true, ms, ns)
    end
    return 0, 0, false
  end
  local popped = redis.call('ZPOPMAX', r, budget)
  local keys = {}
  for i = 1, #popped, 2 do keys[#keys + 1] = popped[i] end
  local removed = sweep(keys, t, stamp, ms, ns)
  if redis.call('EXISTS', r) == 1 then
    if own_ms then pending_add(own_ms, r) end
    return removed, #keys, true
  end
  pending_rem(r)
  set_gone(t, false, ms, ns)
  return removed, #keys, false
end

-- ---------------------------------------------------------------------------------------------
-- Housekeeping in bounded steps: the walk and the pruning of records.

-- One step of the walk: a SCAN of `count` buckets of the namespace's keys. The walk removes what
-- an older generation left (entries, indexes, sets aside), unreadable entries and the keys of
-- older versions of the store; checks every entry filled before the safe mark (revalidate); and
-- lists again any set aside that P:pending lost. A walk started at seq w that completes makes
-- every record's `since` < w obsolete: each entry that could be outside an index then was looked
-- at. Returns true when no walk was wanted or this step completed one (a loss found meanwhile
-- may want another: the next call starts it).
local function walk(count, ms, us, ns)
  local cursor, start = string.match(ns.walk or '', '^(%d+) (%d+)$')
  if not cursor then
    if ns.wanted <= ns.walked then return true end
    cursor, start = '0', int(ns.n)
  end
  local page = redis.call('SCAN', cursor, 'MATCH', P .. ':*', 'COUNT', count)
  local e, t, r = P .. ':e:', P .. ':t:', P .. ':r:'
  local ekeys, names = {}, {}
  for _, key in ipairs(page[2]) do
    if key == STATE or key == META or key == PENDING then
      -- The namespace's own.
    elseif starts(key, e) then
      ekeys[#ekeys + 1] = key
      names[#names + 1] = string.sub(key, #e + 1)
    elseif starts(key, t) then
      -- An index no record expects is an older generation's, or foreign.
      local rec = read_one(string.sub(key, #t + 1))
      if rec then members(key, settle(rec, ms, ns.walked).index_until, 0) end
    elseif starts(key, r) then
      local stamp = set_name(key)
      if not stamp or stamp < gen_start(ns) then
        redis.call('UNLINK', key)
        pending_rem(key)
      elseif not redis.pcall('ZSCORE', PENDING, key) then
        pending_add(0, key)
      end
    elseif starts(key, P .. ':s:') or starts(key, P .. ':x:') then
      -- Stamps and clear drains of versions before PROTOCOL.md.
      redis.call('UNLINK', key)
    end
  end
  local blobs = mget(ekeys)
  for i = 1, #ekeys do
    local blob = blobs[i]
    if not blob then
      -- Another type than a string (foreign), or gone since the scan.
      if redis.call('TYPE', ekeys[i])['ok'] ~= 'none' then redis.call('UNLINK', ekeys[i]) end
    else
      local entry = parse(blob)
      if entry == nil or entry.gen ~= ns.gen then
        redis.call('UNLINK', ekeys[i])
      elseif entry.q < ns.u then
        if revalidate(names[i], entry, ms, ns) == 'broken' then
          bump(ns, true, true, us, ns)
          return false
        end
      end
    end
  end
  if page[1] == '0' then
    redis.call('HSET', META, 'walked', start)
    redis.call('HDEL', META, 'walk')
    ns.walked, ns.walk = tonumber(start), nil
    return true
  end
  ns.walk = page[1] .. ' ' .. start
  redis.call('HSET', META, 'walk', ns.walk)
  return false
end

-- Removes a record that protects nothing any more; `t` must be a tag (its field contains ':').
local function prune_one(t, v, ms, ns)
  local rec = read_rec(v)
  if rec and not needed(settle(rec, ms, ns.walked), ms, ns) then redis.call('HDEL', META, t) end
end

-- Prunes up to `count` records picked at random (HRANDFIELD: O(count) however large the hash):
-- run on the side of writes, twice as many as the records they wrote, so that records that
-- protect nothing cannot accumulate (in expectation at most as many as the live ones).
local function prune_sample(count, ms, ns)
  if count <= 0 then return end
  local picked = redis.call('HRANDFIELD', META, count, 'WITHVALUES')
  for i = 1, #picked, 2 do
    if string.find(picked[i], ':', 1, true) then prune_one(picked[i], picked[i + 1], ms, ns) end
  end
end

-- One step of a complete pass of pruning: an HSCAN of `count` fields of P:meta (its cursor kept
-- in the field `prune`). Returns true when the pass is complete. For housekeeping.
local function prune(count, ms, ns)
  local cursor = redis.call('HGET', META, 'prune') or '0'
  local page = redis.call('HSCAN', META, cursor, 'COUNT', count)
  local fields = page[2]
  for i = 1, #fields, 2 do
    if string.find(fields[i], ':', 1, true) then prune_one(fields[i], fields[i + 1], ms, ns) end
  end
  redis.call('HSET', META, 'prune', page[1])
  return page[1] == '0'
end
