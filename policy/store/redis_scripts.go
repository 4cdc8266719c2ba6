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
// at 2^32-1.
const counterAddLua = `
local k, w, idxs, n = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local idx = tonumber(idxs)
local meta = redis.call('HMGET', k, 'w', 'h')
local heads, head = meta[2], tonumber(meta[2])
if meta[1] ~= w or head == nil then
  redis.call('DEL', k)
  heads, head = idxs, idx
  redis.call('HSET', k, 'w', w, 'h', heads)
elseif idx > head then
  heads, head = idxs, idx
  redis.call('HSET', k, 'h', heads)
end
if redis.call('HINCRBY', k, heads, n) > 4294967295 then
  redis.call('HSET', k, heads, '4294967295')
end
local all = redis.call('HGETALL', k)
local sum, old = 0, {}
for i = 1, #all, 2 do
  local f = tonumber(all[i])
  if f then
    if f <= head - 12 then
      old[#old + 1] = all[i]
    else
      sum = sum + tonumber(all[i + 1])
    end
  end
end
if #old > 0 then redis.call('HDEL', k, unpack(old)) end
redis.call('PEXPIRE', k, ARGV[4])
return sum
`

// counterCountLua: ARGV: width, idx. Read only.
const counterCountLua = `
local k = KEYS[1]
local meta = redis.call('HMGET', k, 'w', 'h')
if meta[1] ~= ARGV[1] or not meta[2] then return 0 end
local head = math.max(tonumber(meta[2]), tonumber(ARGV[2]))
local all = redis.call('HGETALL', k)
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
if s then
  if tonumber(s) < tonumber(now) then redis.call('ZADD', k, now, m) end
else
  if redis.call('ZCARD', k) >= cap then
    redis.call('PEXPIRE', k, ARGV[5])
    return cap
  end
  redis.call('ZADD', k, now, m)
end
redis.call('PEXPIRE', k, ARGV[5])
return redis.call('ZCARD', k)
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
