-- sweep(KEYS[1] = P:seq; ARGV: P, window, cursor, count, clear mark, budget, drain key or "")
-- One bounded step of deleting a cleared namespace.
-- With a drain key: deletes up to `budget` of the entries it lists. Returns {"1"} while it has
-- more, else {"0"}.
-- Else: one SCAN step. Entries go (one filled after the clear too: it raced with it). An index
-- goes with every entry it lists, so that no entry outlives its index: a small one at once, a
-- large one is renamed to P:x:<mark>:<tag> (new puts start a new index) for the client to drain.
-- Sets aside and stamps older than the mark go; P:seq and anything newer than the mark stay.
-- Returns {next cursor ("0": done), keys to drain...}.
local mark, budget = tonumber(ARGV[5]), tonumber(ARGV[6])

local function entries_of(members)
  local out = {}
  for i = 1, #members do
    if members[i] ~= '' then out[#out + 1] = entry_key(members[i]) end
  end
  return out
end

if ARGV[7] ~= '' then
  local popped = redis.call('ZPOPMIN', ARGV[7], budget)
  local members = {}
  for i = 1, #popped, 2 do members[#members + 1] = popped[i] end
  unlink(entries_of(members))
  return { tostring(redis.call('EXISTS', ARGV[7])) }
end

local page = redis.call('SCAN', ARGV[3], 'MATCH', P .. ':*', 'COUNT', ARGV[4])
local out = { page[1] }
local doomed = {}
local e, t, s, r, x = P .. ':e:', P .. ':t:', P .. ':s:', P .. ':r:', P .. ':x:'
local function starts(key, prefix) return string.sub(key, 1, #prefix) == prefix end
for _, key in ipairs(page[2]) do
  if starts(key, e) or key == PENDING then
    doomed[#doomed + 1] = key
  elseif starts(key, t) then
    if redis.call('ZCARD', key) > budget then
      local d = x .. int(mark) .. ':' .. string.sub(key, #t + 1)
      redis.call('RENAME', key, d)
      out[#out + 1] = d
    else
      unlink(entries_of(redis.call('ZRANGE', key, 0, -1)))
      doomed[#doomed + 1] = key
    end
  elseif starts(key, s) then
    if read_meta(redis.call('GET', key)).s <= mark then doomed[#doomed + 1] = key end
  elseif starts(key, r) then
    local seq = tonumber(string.match(string.sub(key, #r + 1), '^(%d+):')) or 0
    if seq < mark then doomed[#doomed + 1] = key end
  elseif starts(key, x) then
    -- Taken by this clear, or left by an interrupted one: drained like the others.
    out[#out + 1] = key
  end
end
unlink(doomed)
return out
