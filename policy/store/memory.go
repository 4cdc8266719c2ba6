package store

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the in-memory store.
const (
	DefaultMaxKeys            = 2_000_000
	DefaultMaxMembers         = 1024
	DefaultMaxComplaints      = 1024
	DefaultComplaintRetention = 30 * 24 * time.Hour

	numShards = 64
	// sweepSample is how many entries a new-key insertion inspects for
	// expiry (Redis-style active expiry: Go map iteration starts at a random
	// position, so the samples cover the map over time).
	sweepSample = 8
	// fullSweepEvery bounds how often (in store time) a full shard calls
	// for a sweep of the whole shard before refusing a new key. A sweep that
	// frees under 1/16 of the shard doubles its wait, up to fullSweepMax, so a store
	// held full by live keys (a flood of spoofed numbers) does not rescan
	// every shard each second: at 2M keys that was ~40 µs per call.
	fullSweepEvery = int64(time.Second)
	fullSweepMax   = int64(30 * time.Second)
)

// MemoryOption configures NewMemory.
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	maxKeys, maxMembers, maxComplaints int
	retention                          time.Duration
}

// WithMaxKeys caps the number of keys in each structure (Counter, Distinct,
// Flags, Complaints separately); default DefaultMaxKeys. The cap is enforced
// per shard (ceil(n/64) keys each), so a structure may refuse a little
// before n keys in total. Values below 1 keep the default.
func WithMaxKeys(n int) MemoryOption {
	return func(c *memoryConfig) {
		if n > 0 {
			c.maxKeys = n
		}
	}
}

// WithMaxMembers caps the members kept per Distinct key; default
// DefaultMaxMembers. Values below 1 keep the default.
func WithMaxMembers(n int) MemoryOption {
	return func(c *memoryConfig) {
		if n > 0 {
			c.maxMembers = n
		}
	}
}

// WithMaxComplaints caps the complaints kept per subject; default
// DefaultMaxComplaints. Values below 1 keep the default.
func WithMaxComplaints(n int) MemoryOption {
	return func(c *memoryConfig) {
		if n > 0 {
			c.maxComplaints = n
		}
	}
}

// WithComplaintRetention sets how long complaints are kept; default
// DefaultComplaintRetention. Values below 1 keep the default.
func WithComplaintRetention(d time.Duration) MemoryOption {
	return func(c *memoryConfig) {
		if d > 0 {
			c.retention = d
		}
	}
}

// Memory is the in-memory Store, for a single node. It is safe for
// concurrent use. Each structure is a map split into 64 shards by key hash,
// each with its own mutex, so concurrent calls on different keys rarely
// contend.
//
// Memory is bounded: idle keys (nothing left in their window, flag expired,
// newest complaint past the retention) are dropped — a few sampled at every
// new-key insertion, all of a shard when it is full, all of them on Sweep —
// and each structure holds at most WithMaxKeys keys. When a shard is full
// and a sweep frees nothing, a new key is refused with ErrFull (existing
// keys keep working) and Stats counts it. Refusing rather than evicting is
// deliberate: an attacker who can create keys (spoofed numbers) must not be
// able to flush a victim's counters or protect flags; the caller's
// fail-open/fail-closed choice applies instead, as for an unreachable Redis.
//
// Memory starts no goroutines; Close is a no-op.
type Memory struct {
	seed       maphash.Seed
	counter    memCounter
	distinct   memDistinct
	flags      memFlags
	complaints memComplaints
	concurrent memConcurrency
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory(opts ...MemoryOption) *Memory {
	cfg := memoryConfig{
		maxKeys:       DefaultMaxKeys,
		maxMembers:    DefaultMaxMembers,
		maxComplaints: DefaultMaxComplaints,
		retention:     DefaultComplaintRetention,
	}
	for _, o := range opts {
		o(&cfg)
	}
	m := &Memory{seed: maphash.MakeSeed()}
	perShard := (cfg.maxKeys + numShards - 1) / numShards
	m.counter.init(m.seed, perShard, counterExpired)
	m.distinct.init(m.seed, perShard, distinctExpired)
	m.distinct.maxMembers = cfg.maxMembers
	m.flags.init(m.seed, perShard, flagExpired)
	m.complaints.init(m.seed, perShard, nil)
	m.complaints.retention = int64(cfg.retention)
	m.complaints.maxPerSubject = cfg.maxComplaints
	m.complaints.expired = m.complaints.subjectExpired
	m.concurrent.init(m.seed, perShard, concExpired)
	return m
}

// Counter returns the sliding-window counters.
func (m *Memory) Counter() Counter { return &m.counter }

// Distinct returns the distinct-member counts.
func (m *Memory) Distinct() Distinct { return &m.distinct }

// Flags returns the expiring flags.
func (m *Memory) Flags() Flags { return &m.flags }

// Complaints returns the complaint log.
func (m *Memory) Complaints() Complaints { return &m.complaints }

// Concurrency returns the calls-in-progress slots.
func (m *Memory) Concurrency() Concurrency { return &m.concurrent }

// Close does nothing and returns nil: Memory holds no goroutines or
// connections.
func (m *Memory) Close() error { return nil }

// Sweep drops every idle key as of now, in all structures. It is optional
// (insertions expire keys as they go); a caller may run it from a ticker it
// owns to return memory after a burst.
func (m *Memory) Sweep(now time.Time) {
	ns := now.UnixNano()
	m.counter.sweepAll(ns)
	m.distinct.sweepAll(ns)
	m.flags.sweepAll(ns)
	m.complaints.sweepAll(ns)
	m.concurrent.sweepAll(ns)
}

// TableStats describes one structure of a Memory store.
type TableStats struct {
	Keys     int    // keys held now (idle ones not yet swept included)
	Expired  uint64 // idle keys dropped since NewMemory
	Rejected uint64 // new keys refused with ErrFull since NewMemory
}

// MemoryStats is a snapshot of a Memory store, for metrics.
type MemoryStats struct {
	Counter, Distinct, Flags, Complaints, Concurrency TableStats
	// DistinctSaturated counts Distinct.Add calls whose new member was not
	// recorded because its key held WithMaxMembers members.
	DistinctSaturated uint64
	// ComplaintsDropped counts complaints dropped to keep a subject within
	// WithMaxComplaints.
	ComplaintsDropped uint64
}

// Stats returns current sizes and counts. It locks each shard in turn, so
// call it from a metrics scrape, not per call.
func (m *Memory) Stats() MemoryStats {
	return MemoryStats{
		Counter:           m.counter.stats(),
		Distinct:          m.distinct.stats(),
		Flags:             m.flags.stats(),
		Complaints:        m.complaints.stats(),
		Concurrency:       m.concurrent.stats(),
		DistinctSaturated: m.distinct.saturated.Load(),
		ComplaintsDropped: m.complaints.dropped.Load(),
	}
}

// table is a sharded map from key to *E with a per-shard key cap and expiry.
type table[E any] struct {
	seed     maphash.Seed
	perShard int
	expired  func(e *E, now int64) bool
	shards   [numShards]shard[E]
	nExpired atomic.Uint64
	rejected atomic.Uint64
}

type shard[E any] struct {
	mu        sync.Mutex
	m         map[string]*E
	lastSweep int64 // store time of the last full sweep, under mu
	sweepWait int64 // wait before the next full sweep (0: fullSweepEvery), under mu
	_         [32]byte
}

func (t *table[E]) init(seed maphash.Seed, perShard int, expired func(*E, int64) bool) {
	t.seed = seed
	t.perShard = perShard
	t.expired = expired
	for i := range t.shards {
		t.shards[i].m = make(map[string]*E)
	}
}

// shard returns the shard of key; the caller locks it.
func (t *table[E]) shard(key string) *shard[E] {
	return &t.shards[maphash.String(t.seed, key)%numShards]
}

// insert adds a new entry for key (absent from sh.m) to the locked shard sh,
// expiring a few idle entries first. It returns nil when the shard is full.
func (t *table[E]) insert(sh *shard[E], key string, now int64) *E {
	n := 0
	for k, e := range sh.m {
		if t.expired(e, now) {
			delete(sh.m, k)
			t.nExpired.Add(1)
		}
		if n++; n >= sweepSample {
			break
		}
	}
	if len(sh.m) >= t.perShard {
		wait := max(sh.sweepWait, fullSweepEvery)
		if now-sh.lastSweep >= wait || now < sh.lastSweep {
			before := len(sh.m)
			t.sweepShard(sh, now)
			if before-len(sh.m) < t.perShard/16 { // next to nothing freed
				sh.sweepWait = min(2*wait, fullSweepMax)
			} else {
				sh.sweepWait = fullSweepEvery
			}
		}
		if len(sh.m) >= t.perShard {
			t.rejected.Add(1)
			return nil
		}
	}
	e := new(E)
	// Clone: the key may be a slice of a whole SIP message.
	sh.m[strings.Clone(key)] = e
	return e
}

func (t *table[E]) sweepShard(sh *shard[E], now int64) {
	sh.lastSweep = now
	for k, e := range sh.m {
		if t.expired(e, now) {
			delete(sh.m, k)
			t.nExpired.Add(1)
		}
	}
}

func (t *table[E]) sweepAll(now int64) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		t.sweepShard(sh, now)
		sh.mu.Unlock()
	}
}

func (t *table[E]) stats() TableStats {
	s := TableStats{Expired: t.nExpired.Load(), Rejected: t.rejected.Load()}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		s.Keys += len(sh.m)
		sh.mu.Unlock()
	}
	return s
}

// floorDiv is a/b rounded towards minus infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
