package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
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
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: negative count %d", ErrInvalid, n)
	}
	width := int64(window) / CounterBuckets
	idx := floorDiv(now.UnixNano(), width)
	ttl := ceilMillis(window + time.Duration(width))
	got, err := asInt(c.r.eval(ctx, opCounterAdd, counterAddScript, c.r.key(keyCounter, key),
		itoa(width), itoa(idx), itoa(min(int64(n), math.MaxUint32)), itoa(ttl)))
	if err != nil {
		return 0, wrap("counter", key, err)
	}
	return got, nil
}

// Count implements Counter.
func (c *redisCounter) Count(ctx context.Context, key string, window time.Duration, now time.Time) (int, error) {
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	width := int64(window) / CounterBuckets
	idx := floorDiv(now.UnixNano(), width)
	got, err := asInt(c.r.eval(ctx, opCounterCount, counterCountScript, c.r.key(keyCounter, key), itoa(width), itoa(idx)))
	if err != nil {
		return 0, wrap("counter", key, err)
	}
	return got, nil
}

type redisDistinct struct{ r *Redis }

// Add implements Distinct. Members are stored as the first 16 bytes of
// their SHA-256: a fixed size per member, and no collisions an attacker
// could aim for (a spoofed caller made to count as one already seen).
func (d *redisDistinct) Add(ctx context.Context, key, member string, window time.Duration, now time.Time) (int, error) {
	if window <= 0 {
		return 0, fmt.Errorf("%w: window %v", ErrInvalid, window)
	}
	h := sha256.Sum256([]byte(member))
	ns := now.UnixNano()
	got, err := asInt(d.r.eval(ctx, opDistinctAdd, distinctAddScript, d.r.key(keyDistinct, key),
		microsNs(ns), microsNs(ns-int64(window)), string(h[:16]), strconv.Itoa(d.r.maxMembers), itoa(ceilMillis(window))))
	if err != nil {
		return 0, wrap("distinct", key, err)
	}
	return got, nil
}

type redisFlags struct{ r *Redis }

// Set implements Flags: SET key <until ns> PX ttl, or DEL when ttl <= 0.
func (f *redisFlags) Set(ctx context.Context, key string, ttl time.Duration, now time.Time) error {
	b := f.r.client.B()
	k := f.r.key(keyFlags, key)
	var cmd rueidis.Completed
	if ttl <= 0 {
		cmd = b.Del().Key(k).Build()
	} else {
		cmd = b.Set().Key(k).Value(itoa(now.UnixNano() + int64(ttl))).PxMilliseconds(ceilMillis(ttl)).Build()
	}
	if err := f.r.do(ctx, opFlagsSet, cmd).Error(); err != nil {
		return wrap("flags", key, err)
	}
	return nil
}

// Get implements Flags: GET key; set while now is before the until stored.
func (f *redisFlags) Get(ctx context.Context, key string, now time.Time) (time.Time, bool, error) {
	b := f.r.client.B()
	s, err := f.r.do(ctx, opFlagsGet, b.Get().Key(f.r.key(keyFlags, key)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, wrap("flags", key, err)
	}
	u, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false, wrap("flags", key, fmt.Errorf("value %q is not a time", s))
	}
	if u <= now.UnixNano() {
		return time.Time{}, false, nil
	}
	return time.Unix(0, u), true, nil
}

type redisComplaints struct{ r *Redis }

// Add implements Complaints. The member is the time in ns and 8 random
// bytes, unique per complaint.
func (c *redisComplaints) Add(ctx context.Context, subject string, at time.Time) error {
	var m [16]byte
	binary.BigEndian.PutUint64(m[:8], uint64(at.UnixNano()))
	binary.BigEndian.PutUint64(m[8:], rand.Uint64())
	err := c.r.eval(ctx, opComplaintsAdd, complaintsAddScript, c.r.key(keyComplaints, subject),
		micros(at), durMicros(c.r.retention), strconv.Itoa(c.r.maxComplaints), string(m[:])).Error()
	if err != nil {
		return wrap("complaints", subject, err)
	}
	return nil
}

// Count implements Complaints: ZCOUNT subject (now-window now].
func (c *redisComplaints) Count(ctx context.Context, subject string, window time.Duration, now time.Time) (int, error) {
	if window <= 0 {
		return 0, fmt.Errorf("%w: window %v", ErrInvalid, window)
	}
	ns := now.UnixNano()
	b := c.r.client.B()
	cmd := b.Zcount().Key(c.r.key(keyComplaints, subject)).Min("(" + microsNs(ns-int64(window))).Max(microsNs(ns)).Build()
	got, err := asInt(c.r.do(ctx, opComplaintsCount, cmd))
	if err != nil {
		return 0, wrap("complaints", subject, err)
	}
	return got, nil
}

type redisConcurrency struct{ r *Redis }

// Acquire implements Concurrency.
func (c *redisConcurrency) Acquire(ctx context.Context, key, member string, ttl time.Duration, now time.Time) (int, error) {
	ns := now.UnixNano()
	got, err := asInt(c.r.eval(ctx, opConcurrencyAcquire, concurrencyAcquireScript, c.r.key(keyConcurrency, key),
		microsNs(ns), microsNs(ns+int64(ttl)), member))
	if err != nil {
		return 0, wrap("concurrency", key, err)
	}
	return got, nil
}

// Release implements Concurrency: ZREM key member.
func (c *redisConcurrency) Release(ctx context.Context, key, member string) error {
	b := c.r.client.B()
	if err := c.r.do(ctx, opConcurrencyRelease, b.Zrem().Key(c.r.key(keyConcurrency, key)).Member(member).Build()).Error(); err != nil {
		return wrap("concurrency", key, err)
	}
	return nil
}

type redisOnce struct{ r *Redis }

// Seen implements Once: EXISTS key. now is unused: the key's expiry (PX)
// runs on Redis's clock.
func (o *redisOnce) Seen(ctx context.Context, key string, _ time.Time) (bool, error) {
	b := o.r.client.B()
	n, err := asInt(o.r.do(ctx, opOnceSeen, b.Exists().Key(o.r.key(keyOnce, key)).Build()))
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
	b := o.r.client.B()
	err := o.r.do(ctx, opOnceClaim, b.Set().Key(o.r.key(keyOnce, key)).Value("1").Nx().PxMilliseconds(ceilMillis(ttl)).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	if err != nil {
		return false, wrap("once", key, err)
	}
	return true, nil
}
