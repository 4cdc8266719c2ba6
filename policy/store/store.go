// Package store holds the policy state that outlives one call and one
// configuration generation: sliding-window counters, distinct-member counts,
// expiring flags and the complaint log. The policy stages talk to it only
// through the small interfaces below, so the in-memory implementation
// (Memory) and a Redis one can be swapped without touching the rules.
//
// Every method takes a context (the Redis implementation honours its
// deadline; Memory only checks ctx.Err() first) and, where time matters, the
// caller's clock reading now: the store never reads the wall clock itself,
// so tests inject time and all nodes agree on what "now" means for a call.
//
// Keys are opaque to the store. Callers namespace them (for example
// "rate:<rule>:<source>"), and a key is used with one window: see Counter.
package store

import (
	"context"
	"time"
)

// CounterBuckets is the number of sub-buckets a Counter window is divided
// into. An event is counted for at least window - window/CounterBuckets and
// at most window after it happened (so a count may miss up to one bucket's
// worth of the oldest events, never includes events older than window).
const CounterBuckets = 12

// Counter counts events per key in a sliding window: rate limits, call
// bombing (A->B counts), floods per source.
//
// The window is approximated by CounterBuckets buckets of window/12 each,
// aligned on multiples of the bucket width since the Unix epoch, so every
// node and implementation buckets identically. A key is meant to be used
// with a single window; calling with a different window resets the key.
// Time never goes backwards for a key: a now earlier than the newest bucket
// is treated as that bucket.
//
// Redis: one hash per key (fields w = width, h = newest index, and one per
// bucket index now.UnixNano()/width), in a Lua script: HINCRBY the current
// field, HDEL fields at or below index-CounterBuckets, sum the remaining
// fields, PEXPIRE the key to window+width. The result equals Memory's for
// the same calls.
type Counter interface {
	// Add records n (>= 0) events for key at now and returns the count
	// within the window ending at now, these events included.
	// window must be at least CounterBuckets nanoseconds.
	Add(ctx context.Context, key string, n int, window time.Duration, now time.Time) (int, error)
	// Count returns the count within the window ending at now without
	// recording anything; an unknown or idle key counts 0 and is not created.
	Count(ctx context.Context, key string, window time.Duration, now time.Time) (int, error)
}

// Distinct counts distinct members per key within a sliding window: distinct
// callers of one callee (victim protection), distinct callees of one caller
// (one-ring). A member is in the window if it was last added less than
// window ago. Members are kept as 64-bit hashes, exact in practice.
//
// Counts are exact up to the implementation's member cap (Memory: 1,024 by
// default, WithMaxMembers). When a key holds that many members within the
// window, new members are not recorded and Add returns the cap: read it as
// "at least the cap". Policy thresholds are meant to be far below it.
//
// Redis: a sorted set per key, member = 16 bytes of the member's SHA-256,
// score = time in µs: ZREMRANGEBYSCORE key -inf (now-window); ZSCORE key
// member, and when absent ZCARD and, below the cap, ZADD key now member
// (a present member's score only moves forward); ZCARD; PEXPIRE key
// window. Done in one Lua script so the cap holds.
type Distinct interface {
	// Add records member for key at now and returns the number of distinct
	// members seen within the window ending at now, member included (capped).
	Add(ctx context.Context, key, member string, window time.Duration, now time.Time) (int, error)
}

// Flags are keys that are set until an expiry: protect mode for a callee,
// "flagged as one-ring" for a caller, a callback shield.
//
// Redis: Set is SET key <until in ns> PX ttl (DEL when ttl <= 0); Get is GET
// key, ok when it exists and until is after now (now is compared too, so a
// node whose clock is ahead of Redis's sees the same answer as Memory),
// served from the client-side cache that Redis invalidates when any node
// writes the key.
type Flags interface {
	// Set sets key for ttl from now (until = now+ttl), replacing any
	// previous expiry, earlier or later: the last Set wins. A ttl <= 0
	// clears the flag.
	Set(ctx context.Context, key string, ttl time.Duration, now time.Time) error
	// Get reports whether key is set at now, and until when.
	Get(ctx context.Context, key string, now time.Time) (until time.Time, ok bool, err error)
}

// Complaints is the complaint log fed by 607 Unwanted (RFC 8197): one entry
// per complaint against a subject (a calling number or a trunk).
//
// The implementation keeps complaints for a retention period (Memory: 30 days
// by default, WithComplaintRetention) and at most a cap per subject (Memory:
// 1,024, WithMaxComplaints), dropping the oldest; a Count is therefore exact
// up to the cap and for windows up to the retention.
//
// Redis: a sorted set per subject, score = time in µs, member unique per
// complaint (time plus a random suffix): Add is a Lua script (ZREMRANGEBYSCORE
// -inf (newest-retention), at the cap ZREMRANGEBYRANK the oldest, ZADD,
// PEXPIRE to retention after the newest); Count is ZCOUNT subject
// (now-window now.
type Complaints interface {
	// Add records one complaint against subject at the given time.
	// Complaints older than the retention are ignored.
	Add(ctx context.Context, subject string, at time.Time) error
	// Count returns the complaints against subject in (now-window, now].
	Count(ctx context.Context, subject string, window time.Duration, now time.Time) (int, error)
}

// Concurrency counts calls in progress per key (a customer, a trunk): a
// call holds a slot, named by member (its Call-ID), from Acquire until
// Release. A slot also ends at its ttl, so one whose release was lost (a
// crashed node) frees itself.
//
// Redis: a sorted set per key, member = call, score = expiry in µs:
// ZREMRANGEBYSCORE key -inf now; ZADD key expiry member; ZCARD; PEXPIRE key
// to the latest expiry, in one Lua script. Release is ZREM.
type Concurrency interface {
	// Acquire takes a slot for member (re-acquiring renews it) and returns
	// the number of slots held at now, this one included.
	Acquire(ctx context.Context, key, member string, ttl time.Duration, now time.Time) (int, error)
	// Release frees member's slot; an unknown one is not an error.
	Release(ctx context.Context, key, member string) error
}

// Store bundles the five structures. It is created once in main and injected
// into every configuration generation, so state survives reloads. The
// structures are separate values (not one type implementing five interfaces)
// because their methods share names; each has its own key space.
type Store interface {
	Counter() Counter
	Distinct() Distinct
	Flags() Flags
	Complaints() Complaints
	Concurrency() Concurrency
	// Close releases the store's resources (connections for Redis; nothing
	// for Memory). The structures must not be used afterwards.
	Close() error
}
