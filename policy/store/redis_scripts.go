package store

// The Lua scripts of the Redis store. Each touches exactly one key (KEYS[1])
// and computes every time from its arguments (the caller's now), never from
// Redis's clock. Numbers given back to redis.call go through string.format
// ('%d' for integers), since Lua prints large numbers as 1.7e+15.

// counterAddLua: one hash per Counter key: 'w' = bucket width (ns), 'h' =
// newest bucket index, and one field per bucket index with its count.
// ARGV: width, idx (now/width), n (<= 2^32-1), ttl ms. Returns the sum of
// the buckets in (head-12, head]. A different width resets the key; an idx
// before the head counts in the head bucket (as Memory). Buckets saturate
// at 2^32-1. One HGETALL reads everything (width, head and buckets), one
// HSET writes the head bucket (and a new head): a new key costs HGETALL,
// HSET, PEXPIRE. Buckets are never written above the head, so the new
// head's bucket starts at 0.
const counterAddLua = `
local k, w, idxs, n = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local all = redis.call('HGETALL', k)
local kw, kh
for i = 1, #all, 2 do
  if all[i] == 'w' then kw = all[i + 1] elseif all[i] == 'h' then kh = all[i + 1] end
end
local head = tonumber(kh)
if kw ~= w or head == nil then
  if #all > 0 then redis.call('DEL', k) end
  redis.call('HSET', k, 'w', w, 'h', idxs, idxs, ARGV[3])
  redis.call('PEXPIRE', k, ARGV[4])
  return n
end
local heads = kh
if tonumber(idxs) > head then heads, head = idxs, tonumber(idxs) end
local sum, cur, old = 0, 0, {}
for i = 1, #all, 2 do
  local f = tonumber(all[i])
  if f then
    if f <= head - 12 then
      old[#old + 1] = all[i]
    elseif all[i] == heads then
      cur = tonumber(all[i + 1])
    else
      sum = sum + tonumber(all[i + 1])
    end
  end
end
cur = math.min(cur + n, 4294967295)
local curs = string.format('%d', cur)
if heads ~= kh then
  redis.call('HSET', k, 'h', heads, heads, curs)
else
  redis.call('HSET', k, heads, curs)
end
if #old > 0 then redis.call('HDEL', k, unpack(old)) end
redis.call('PEXPIRE', k, ARGV[4])
return sum + cur
`

// counterCountLua: ARGV: width, idx. Read only: one HGETALL.
const counterCountLua = `
local all = redis.call('HGETALL', KEYS[1])
local kw, kh
for i = 1, #all, 2 do
  if all[i] == 'w' then kw = all[i + 1] elseif all[i] == 'h' then kh = all[i + 1] end
end
if kw ~= ARGV[1] or not kh then return 0 end
local head = math.max(tonumber(kh), tonumber(ARGV[2]))
local sum = 0
for i = 1, #all, 2 do
  local f = tonumber(all[i])
  if f and f > head - 12 and f <= head then sum = sum + tonumber(all[i + 1]) end
end
return sum
`

// distinctAddLua: one sorted set per Distinct key, member = hash of the
// member, score = last added (µs). ARGV: now µs, cutoff µs (now-window:
// members at or before it are out), member, cap, ttl ms. Returns the number
// of members in the window (the cap when a new member did not fit).
const distinctAddLua = `
local k, now, m, cap = KEYS[1], ARGV[1], ARGV[3], tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[2])
local s = redis.call('ZSCORE', k, m)
local card = redis.call('ZCARD', k)
if s then
  if tonumber(s) < tonumber(now) then redis.call('ZADD', k, now, m) end
elseif card >= cap then
  card = cap
else
  redis.call('ZADD', k, now, m)
  card = card + 1
end
redis.call('PEXPIRE', k, ARGV[5])
return card
`

// complaintsAddLua: one sorted set per subject, score = time (µs), member
// unique per complaint. ARGV: at µs, retention µs, cap, member. Complaints
// at or before newest-retention are dropped (the new one too); at the cap
// the oldest goes, or the new one when it is older than all. The key
// expires retention after its newest complaint, counted from at. Returns 1
// when a complaint was dropped for the cap.
const complaintsAddLua = `
local k, at, ret, cap = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local newest = at
local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
if top[2] and tonumber(top[2]) > newest then newest = tonumber(top[2]) end
if at <= newest - ret then return 0 end
redis.call('ZREMRANGEBYSCORE', k, '-inf', string.format('%d', newest - ret))
local dropped = 0
local n = redis.call('ZCARD', k)
if n >= cap then
  local low = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  if at < tonumber(low[2]) then return 1 end
  redis.call('ZREMRANGEBYRANK', k, 0, n - cap)
  dropped = 1
end
redis.call('ZADD', k, ARGV[1], ARGV[4])
redis.call('PEXPIRE', k, string.format('%d', math.ceil((newest - at + ret) / 1000)))
return dropped
`

// concurrencyAcquireLua: one sorted set per key, member = call, score =
// expiry (µs). ARGV: now µs, expiry µs, member. Slots expiring at or before
// now are freed. The key expires with its latest slot. Returns the slots
// held.
const concurrencyAcquireLua = `
local k, now = KEYS[1], tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[1])
redis.call('ZADD', k, ARGV[2], ARGV[3])
local n = redis.call('ZCARD', k)
local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
local ms = math.ceil((tonumber(top[2]) - now) / 1000)
if ms < 1 then ms = 1 end
redis.call('PEXPIRE', k, string.format('%d', ms))
return n
`

var (
	counterAddScript         = newScript(counterAddLua)
	counterCountScript       = newScript(counterCountLua)
	distinctAddScript        = newScript(distinctAddLua)
	complaintsAddScript      = newScript(complaintsAddLua)
	concurrencyAcquireScript = newScript(concurrencyAcquireLua)

	allScripts = []*script{counterAddScript, counterCountScript, distinctAddScript, complaintsAddScript, concurrencyAcquireScript}
)
