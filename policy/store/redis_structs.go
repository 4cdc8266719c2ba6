package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Key letters of the structures (see Redis.key).
const (
	keyCounter     = "c"
	keyDistinct    = "d"
	keyFlags       = "f"
	keyComplaints  = "p"
	keyConcurrency = "n"
	keyOnce        = "o"
)

type redisCounter struct{ r *Redis }

// Add implements Counter.
func (c *redisCounter) Add(ctx context.Context, key string, n int, window time.Duration, now time.Time) (int, error) {
	res := c.r.one(ctx, Op{Kind: OpCounterAdd, Key: key, N: n, Window: window}, now)
	return res.N, res.Err
}

// Count implements Counter.
func (c *redisCounter) Count(ctx context.Context, key string, window time.Duration, now time.Time) (int, error) {
	res := c.r.one(ctx, Op{Kind: OpCounterCount, Key: key, Window: window}, now)
	return res.N, res.Err
}

type redisDistinct struct{ r *Redis }

// Add implements Distinct. Members are stored as the first 16 bytes of
// their SHA-256: a fixed size per member, and no collisions an attacker
// could aim for (a spoofed caller made to count as one already seen).
func (d *redisDistinct) Add(ctx context.Context, key, member string, window time.Duration, now time.Time) (int, error) {
	res := d.r.one(ctx, Op{Kind: OpDistinctAdd, Key: key, Member: member, Window: window}, now)
	return res.N, res.Err
}

type redisFlags struct{ r *Redis }

// Set implements Flags: SET key <until ns> PX ttl, or DEL when ttl <= 0.
func (f *redisFlags) Set(ctx context.Context, key string, ttl time.Duration, now time.Time) error {
	return f.r.one(ctx, Op{Kind: OpFlagsSet, Key: key, Window: ttl}, now).Err
}

// Get implements Flags: GET key (from the client-side cache when it holds
// the key); set while now is before the until stored.
func (f *redisFlags) Get(ctx context.Context, key string, now time.Time) (time.Time, bool, error) {
	res := f.r.one(ctx, Op{Kind: OpFlagsGet, Key: key}, now)
	return res.Until, res.OK, res.Err
}

type redisComplaints struct{ r *Redis }

// Add implements Complaints. The member is the time in ns and 8 random
// bytes, unique per complaint.
func (c *redisComplaints) Add(ctx context.Context, subject string, at time.Time) error {
	return c.r.one(ctx, Op{Kind: OpComplaintsAdd, Key: subject}, at).Err
}

// Count implements Complaints: ZCOUNT subject (now-window now].
func (c *redisComplaints) Count(ctx context.Context, subject string, window time.Duration, now time.Time) (int, error) {
	res := c.r.one(ctx, Op{Kind: OpComplaintsCount, Key: subject, Window: window}, now)
	return res.N, res.Err
}

type redisConcurrency struct{ r *Redis }

// Acquire implements Concurrency.
func (c *redisConcurrency) Acquire(ctx context.Context, key, member string, ttl time.Duration, now time.Time) (int, error) {
	res := c.r.one(ctx, Op{Kind: OpConcurrencyAcquire, Key: key, Member: member, Window: ttl}, now)
	return res.N, res.Err
}

// Release implements Concurrency: ZREM key member.
func (c *redisConcurrency) Release(ctx context.Context, key, member string) error {
	return c.r.one(ctx, Op{Kind: OpConcurrencyRelease, Key: key, Member: member}, time.Time{}).Err
}

// call is one operation as Redis runs it: a script with its key and
// arguments, or one command, or a cacheable GET; err when the arguments
// are invalid (nothing is sent).
type call struct {
	kind      OpKind
	op        string // the op label of the metrics
	structure string // for errors
	key       string // the caller's key, for errors
	s         *script
	rkey      string
	args      []string
	cmd       rueidis.Completed // when s == nil and not cached
	cached    rueidis.Cacheable // a Flags.Get served through the client-side cache
	cache     bool
	err       error
}

// prepare turns op into its Redis call: the layouts of the README.
func (r *Redis) prepare(b rueidis.Builder, op Op, now time.Time) call {
	c := call{kind: op.Kind, key: op.Key}
	ns := now.UnixNano()
	switch op.Kind {
	case OpCounterAdd, OpCounterCount:
		c.structure, c.rkey = "counter", r.key(keyCounter, op.Key)
		if c.err = checkWindow(op.Window); c.err != nil {
			return c
		}
		width := int64(op.Window) / CounterBuckets
		idx := floorDiv(ns, width)
		if op.Kind == OpCounterCount {
			c.op, c.s, c.args = opCounterCount, counterCountScript, []string{itoa(width), itoa(idx)}
			return c
		}
		if op.N < 0 {
			c.err = fmt.Errorf("%w: negative count %d", ErrInvalid, op.N)
			return c
		}
		ttl := ceilMillis(op.Window + time.Duration(width))
		c.op, c.s = opCounterAdd, counterAddScript
		c.args = []string{itoa(width), itoa(idx), itoa(min(int64(op.N), math.MaxUint32)), itoa(ttl)}
	case OpDistinctAdd:
		c.structure, c.rkey, c.op, c.s = "distinct", r.key(keyDistinct, op.Key), opDistinctAdd, distinctAddScript
		if op.Window <= 0 {
			c.err = fmt.Errorf("%w: window %v", ErrInvalid, op.Window)
			return c
		}
		h := sha256.Sum256([]byte(op.Member))
		c.args = []string{microsNs(ns), microsNs(ns - int64(op.Window)), string(h[:16]), strconv.Itoa(r.maxMembers), itoa(ceilMillis(op.Window))}
	case OpFlagsSet:
		c.structure, c.op = "flags", opFlagsSet
		k := r.key(keyFlags, op.Key)
		if op.Window <= 0 {
			c.cmd = b.Del().Key(k).Build()
		} else {
			c.cmd = b.Set().Key(k).Value(itoa(ns + int64(op.Window))).PxMilliseconds(ceilMillis(op.Window)).Build()
		}
	case OpFlagsGet:
		c.structure, c.op = "flags", opFlagsGet
		k := r.key(keyFlags, op.Key)
		c.rkey = k
		if r.cacheTTL > 0 && !r.own.recent(k) {
			c.cached, c.cache = b.Get().Key(k).Cache(), true
		} else {
			c.cmd = b.Get().Key(k).Build()
		}
	case OpComplaintsAdd:
		c.structure, c.rkey, c.op, c.s = "complaints", r.key(keyComplaints, op.Key), opComplaintsAdd, complaintsAddScript
		var m [16]byte
		binary.BigEndian.PutUint64(m[:8], uint64(ns))
		binary.BigEndian.PutUint64(m[8:], rand.Uint64())
		c.args = []string{micros(now), durMicros(r.retention), strconv.Itoa(r.maxComplaints), string(m[:])}
	case OpComplaintsCount:
		c.structure, c.op = "complaints", opComplaintsCount
		if op.Window <= 0 {
			c.err = fmt.Errorf("%w: window %v", ErrInvalid, op.Window)
			return c
		}
		c.cmd = b.Zcount().Key(r.key(keyComplaints, op.Key)).Min("(" + microsNs(ns-int64(op.Window))).Max(microsNs(ns)).Build()
	case OpConcurrencyAcquire:
		c.structure, c.rkey, c.op, c.s = "concurrency", r.key(keyConcurrency, op.Key), opConcurrencyAcquire, concurrencyAcquireScript
		c.args = []string{microsNs(ns), microsNs(ns + int64(op.Window)), op.Member}
	case OpConcurrencyRelease:
		c.structure, c.op = "concurrency", opConcurrencyRelease
		c.cmd = b.Zrem().Key(r.key(keyConcurrency, op.Key)).Member(op.Member).Build()
	default:
		c.err = fmt.Errorf("%w: operation kind %d", ErrInvalid, op.Kind)
	}
	return c
}

// read turns a call's reply into its Result, the error wrapped with the
// structure and key.
func (c *call) read(res rueidis.RedisResult, now time.Time) Result {
	var out Result
	switch c.kind {
	case OpFlagsSet, OpComplaintsAdd, OpConcurrencyRelease:
		out.Err = res.Error()
	case OpFlagsGet:
		s, err := res.ToString()
		switch {
		case rueidis.IsRedisNil(err):
		case err != nil:
			out.Err = err
		default:
			u, perr := strconv.ParseInt(s, 10, 64)
			if perr != nil {
				out.Err = fmt.Errorf("value %q is not a time", s)
			} else if u > now.UnixNano() {
				out.Until, out.OK = time.Unix(0, u), true
			}
		}
	default:
		out.N, out.Err = asInt(res)
	}
	if out.Err != nil {
		return Result{Err: wrap(c.structure, c.key, out.Err)}
	}
	return out
}

// one runs one operation in its own round trip (or from the cache) under
// the operation deadline.
func (r *Redis) one(ctx context.Context, op Op, now time.Time) Result {
	client, err := r.client()
	if err != nil {
		r.m.errors.WithLabelValues(errKind(err)).Inc()
		return Result{Err: wrap("store", op.Key, err)}
	}
	b := client.B()
	c := r.prepare(b, op, now)
	if c.err != nil {
		return Result{Err: c.err}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	start := time.Now()
	var res rueidis.RedisResult
	switch {
	case c.s != nil:
		res = client.Do(ctx, c.s.evalsha(b, c.rkey, c.args))
		if e, ok := rueidis.IsRedisErr(res.Error()); ok && e.IsNoScript() {
			res = client.Do(ctx, c.s.eval(b, c.rkey, c.args))
		}
	case c.cache:
		res = client.DoCache(ctx, c.cached, r.cacheTTL)
		r.cacheObserve(res)
	default:
		res = client.Do(ctx, c.cmd)
	}
	r.observe(c.op, start, res.Error())
	return r.result(&c, res, now)
}

// result reads a call's reply; a Flags.Set that succeeded is remembered,
// so this node's next Gets of the key skip the cache (see ownSets).
func (r *Redis) result(c *call, res rueidis.RedisResult, now time.Time) Result {
	out := c.read(res, now)
	if c.kind == OpFlagsSet && out.Err == nil && r.cacheTTL > 0 {
		r.own.add(r.key(keyFlags, c.key))
	}
	return out
}

// ownSets are the flags this node set within the last ownSetWindow. Redis
// invalidates a node's cached copy of a key it writes itself too, but the
// invalidation may come on another connection than the write's reply
// (rueidis spreads commands over its connections), so a Get right after
// this node's own Set could still read the old cached value. Such keys
// are read from Redis, not the cache, for ownSetWindow: by then the
// invalidation has long arrived (or its connection broke, which empties
// that connection's cache).
type ownSets struct {
	mu sync.Mutex
	m  map[string]time.Time // Redis key -> until when it skips the cache
}

// ownSetWindow is how long a node reads a flag it set from Redis.
const ownSetWindow = time.Second

func (o *ownSets) add(k string) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]time.Time{}
	}
	if len(o.m) >= 1024 {
		for key, until := range o.m {
			if now.After(until) {
				delete(o.m, key)
			}
		}
	}
	o.m[k] = now.Add(ownSetWindow)
}

func (o *ownSets) recent(k string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	until, ok := o.m[k]
	if ok && time.Now().After(until) {
		delete(o.m, k)
		ok = false
	}
	return ok
}

// Batch implements Batcher: the operations' commands go out in one write
// (DoMulti) and their replies come back in one round trip. Flag reads go
// through the client-side cache (DoMultiCache) only when the batch holds
// nothing else, since only then can a hit save the round trip; on a Cluster rueidis splits the batch by slot and sends each
// node's part in parallel. A script that a restarted or failed-over node
// forgot is sent again with EVAL: one more round trip for all of them.
// The whole batch runs under one operation deadline.
func (r *Redis) Batch(ctx context.Context, ops []Op, now time.Time, res []Result) int {
	client, err := r.client()
	if err != nil {
		for i := range ops {
			res[i] = Result{Err: wrap("store", ops[i].Key, err)}
		}
		r.m.errors.WithLabelValues(errKind(err)).Add(float64(len(ops)))
		return 0
	}
	calls := make([]call, len(ops))
	replies := make([]rueidis.RedisResult, len(ops))
	var plain []rueidis.Completed
	var cached []rueidis.CacheableTTL
	var plainAt, cachedAt []int
	b := client.B()
	uncached := false // an op that needs Redis whatever the cache holds
	for i, op := range ops {
		calls[i] = r.prepare(b, op, now)
		uncached = uncached || (calls[i].err == nil && !calls[i].cache)
	}
	for i := range calls {
		c := &calls[i]
		if c.cache && uncached {
			// The batch makes its round trip anyway: a plain GET rides
			// along for free, where a miss through the cache would cost
			// four more commands and a second pipeline.
			c.cache, c.cmd = false, b.Get().Key(c.rkey).Build()
		}
		switch {
		case c.err != nil:
			res[i] = Result{Err: c.err}
		case c.s != nil:
			plain, plainAt = append(plain, c.s.evalsha(b, c.rkey, c.args)), append(plainAt, i)
		case c.cache:
			cached, cachedAt = append(cached, rueidis.CT(c.cached, r.cacheTTL)), append(cachedAt, i)
		default:
			plain, plainAt = append(plain, c.cmd), append(plainAt, i)
		}
	}
	if len(plain)+len(cached) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	start := time.Now()
	trips := 0
	// Either plain commands or cached reads (see above), never both.
	if len(plain) > 0 {
		trips = 1
		for j, rr := range client.DoMulti(ctx, plain...) {
			replies[plainAt[j]] = rr
		}
	} else {
		for j, rr := range client.DoMultiCache(ctx, cached...) {
			replies[cachedAt[j]] = rr
		}
	}
	for _, i := range cachedAt {
		r.cacheObserve(replies[i])
		if !replies[i].IsCacheHit() {
			trips = 1
		}
	}
	var again []rueidis.Completed
	var againAt []int
	for _, i := range plainAt {
		c := &calls[i]
		if e, ok := rueidis.IsRedisErr(replies[i].Error()); ok && e.IsNoScript() && c.s != nil {
			again, againAt = append(again, c.s.eval(b, c.rkey, c.args)), append(againAt, i)
		}
	}
	if len(again) > 0 {
		trips++
		for j, rr := range client.DoMulti(ctx, again...) {
			replies[againAt[j]] = rr
		}
	}
	for i := range calls {
		if calls[i].err != nil {
			continue
		}
		if err := replies[i].Error(); err != nil && !rueidis.IsRedisNil(err) {
			r.m.errors.WithLabelValues(errKind(err)).Inc()
		}
		res[i] = r.result(&calls[i], replies[i], now)
	}
	r.m.seconds.WithLabelValues(opBatch).Observe(time.Since(start).Seconds())
	return trips
}

type redisOnce struct{ r *Redis }

// Seen implements Once: EXISTS key. now is unused: the key's expiry (PX)
// runs on Redis's clock.
func (o *redisOnce) Seen(ctx context.Context, key string, _ time.Time) (bool, error) {
	n, err := asInt(o.r.do(ctx, opOnceSeen, func(b rueidis.Builder) rueidis.Completed {
		return b.Exists().Key(o.r.key(keyOnce, key)).Build()
	}))
	if err != nil {
		return false, wrap("once", key, err)
	}
	return n > 0, nil
}

// Claim implements Once: SET key 1 NX PX ttl. now is unused (see Seen).
func (o *redisOnce) Claim(ctx context.Context, key string, ttl time.Duration, _ time.Time) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("%w: ttl %v", ErrInvalid, ttl)
	}
	err := o.r.do(ctx, opOnceClaim, func(b rueidis.Builder) rueidis.Completed {
		return b.Set().Key(o.r.key(keyOnce, key)).Value("1").Nx().PxMilliseconds(ceilMillis(ttl)).Build()
	}).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	if err != nil {
		return false, wrap("once", key, err)
	}
	return true, nil
}
