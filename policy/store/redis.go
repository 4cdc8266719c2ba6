package store

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// RedisOptions is what NewRedis needs; cmd builds it from RedisConfig (the
// password read from its file, the TLS files loaded).
type RedisOptions struct {
	Mode               string // standalone | sentinel | cluster
	Addrs              []string
	MasterName         string // sentinel only
	Username, Password string
	DB                 int
	TLS                *tls.Config   // nil: plain TCP
	Timeout            time.Duration // per operation (0: DefaultRedisTimeout)
	DialTimeout        time.Duration // per (re)connection attempt (0: DefaultRedisDialTimeout)
	KeyPrefix          string        // before every key
	Registerer         prometheus.Registerer
	// The same caps as Memory's (0: Memory's defaults).
	MaxMembers, MaxComplaints int
	ComplaintRetention        time.Duration
	// CacheTTL bounds how long a flag read stays in the client-side cache
	// (0: DefaultRedisCacheTTL; negative: no client-side caching).
	CacheTTL time.Duration
	// Background: a Redis that cannot be reached at start (refused, timed
	// out) is not an error; NewRedis returns a store whose operations fail
	// with ErrNotConnected, and keeps trying in the background until Redis
	// answers (logged to Log). Errors that retrying cannot fix (a wrong
	// password, not a Cluster) are still returned.
	Background bool
	Log        *slog.Logger
}

// DefaultRedisCacheTTL bounds how long a flag read is served from the
// client-side cache. Redis invalidates an entry as soon as any node changes
// the key, and an entry never outlives the key's own expiry; the bound only
// limits how long a lost invalidation could go unnoticed.
const DefaultRedisCacheTTL = 30 * time.Second

// redisCacheBytes is the client-side cache of each connection: flags are
// ~100 bytes an entry, so 32 MiB holds a few hundred thousand callers.
const redisCacheBytes = 32 << 20

// Redis is the Store shared by several nodes through Redis (standalone,
// Sentinel or Cluster). Every operation is one round trip: a single command
// or a Lua script run by SHA (EVALSHA, falling back to EVAL after a Redis
// restart or failover flushed the script cache), each touching one key, so
// it is atomic on a Cluster too. Times come from the caller's now, never
// from Redis's clock, so Memory and Redis give the same answers for the same
// calls (Redis keeps sorted-set times in µs, Memory in ns); only the key
// expiries (PEXPIRE, SET PX) run on Redis's clock, and they only drop keys
// whose contents no longer count.
//
// Every method bounds its call with Timeout (context.WithTimeout on top of
// the caller's context) and wraps any failure with the structure and key.
// The client reconnects by itself after an outage.
type Redis struct {
	conn    atomic.Pointer[redisConn] // nil until connected
	closing chan struct{}             // closed by Close: stops connecting
	close1  sync.Once
	prefix  string
	timeout time.Duration
	// cacheTTL > 0: Flags.Get goes through the client-side cache for at
	// most this long.
	cacheTTL time.Duration
	own      ownSets // flags this node just set: read from Redis
	m        *redisMetrics

	maxMembers, maxComplaints int
	retention                 time.Duration

	counter    redisCounter
	distinct   redisDistinct
	flags      redisFlags
	complaints redisComplaints
	concurrent redisConcurrency
	once       redisOnce
}

// redisConn is a connected client.
type redisConn struct{ client rueidis.Client }

// client is the connected client, or ErrNotConnected.
func (r *Redis) client() (rueidis.Client, error) {
	if c := r.conn.Load(); c != nil {
		return c.client, nil
	}
	return nil, ErrNotConnected
}

var (
	_ Store   = (*Redis)(nil)
	_ Batcher = (*Redis)(nil)
)

// NewRedis connects to Redis (see RedisOptions.Background for a Redis
// that cannot be reached). An error names the mode, the addresses and the
// cause (never the password).
func NewRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultRedisDialTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	where := fmt.Sprintf("redis %s %s", o.Mode, strings.Join(o.Addrs, ","))
	opt, err := clientOption(o, where)
	if err != nil {
		return nil, err
	}
	m, err := newRedisMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("%s: metrics: %w", where, err)
	}
	r := &Redis{
		closing:       make(chan struct{}),
		prefix:        o.KeyPrefix,
		timeout:       o.Timeout,
		cacheTTL:      o.CacheTTL,
		m:             m,
		maxMembers:    cmp0(o.MaxMembers, DefaultMaxMembers),
		maxComplaints: cmp0(o.MaxComplaints, DefaultMaxComplaints),
		retention:     o.ComplaintRetention,
	}
	if r.retention <= 0 {
		r.retention = DefaultComplaintRetention
	}
	if r.cacheTTL == 0 {
		r.cacheTTL = DefaultRedisCacheTTL
	}
	r.counter.r, r.distinct.r, r.flags.r, r.complaints.r, r.concurrent.r, r.once.r = r, r, r, r, r, r
	client, err := r.connect(ctx, opt, o)
	if err == nil {
		r.conn.Store(&redisConn{client})
		return r, nil
	}
	if !o.Background || !unreachable(err) {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	o.Log.Error("state: redis unreachable at start; stateful rules apply on_store_error until it answers", "redis", where, "err", err)
	go r.connectLater(opt, o, where)
	return r, nil
}

// clientOption is rueidis's option for o.
func clientOption(o RedisOptions, where string) (rueidis.ClientOption, error) {
	if len(o.Addrs) == 0 {
		return rueidis.ClientOption{}, fmt.Errorf("%s: no address", where)
	}
	opt := rueidis.ClientOption{
		InitAddress: o.Addrs,
		Username:    o.Username,
		Password:    o.Password,
		SelectDB:    o.DB,
		TLSConfig:   o.TLS,
		Dialer:      net.Dialer{Timeout: o.DialTimeout},
		// Client-side caching (RESP3 CLIENT TRACKING, opt-in: only the
		// flag reads are tracked) for the flags read on every call.
		DisableCache:      o.CacheTTL < 0,
		CacheSizeEachConn: redisCacheBytes,
	}
	switch o.Mode {
	case "standalone":
		opt.ForceSingleClient = true
	case "sentinel":
		if o.MasterName == "" {
			return opt, fmt.Errorf("%s: sentinel needs a master name", where)
		}
		// The sentinels are reached with the same TLS and without AUTH;
		// the master with the ACL user above.
		opt.Sentinel = rueidis.SentinelOption{
			MasterSet: o.MasterName,
			TLSConfig: o.TLS,
			Dialer:    net.Dialer{Timeout: o.DialTimeout},
		}
	case "cluster":
		if o.DB != 0 {
			return opt, fmt.Errorf("%s: a Redis Cluster has database 0 only", where)
		}
	default:
		return opt, fmt.Errorf("%s: mode %q is not one of standalone, sentinel, cluster", where, o.Mode)
	}
	return opt, nil
}

// connect makes a client, checks the mode and loads the scripts on every
// node, so calls start with EVALSHA (a node that forgets them later, by a
// restart or failover, gets EVAL once).
func (r *Redis) connect(ctx context.Context, opt rueidis.ClientOption, o RedisOptions) (rueidis.Client, error) {
	client, err := rueidis.NewClient(opt)
	if errors.Is(err, rueidis.ErrNoCache) {
		// A Redis before 6 (no RESP3, no tracking): no client-side cache.
		opt.DisableCache, r.cacheTTL = true, -1
		client, err = rueidis.NewClient(opt)
	}
	if err != nil {
		return nil, err
	}
	if o.Mode == "cluster" && client.Mode() != rueidis.ClientModeCluster {
		client.Close()
		return nil, errNotCluster
	}
	lctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	for addr, node := range client.Nodes() {
		for _, s := range allScripts {
			if err := node.Do(lctx, node.B().ScriptLoad().Script(s.src).Build()).Error(); err != nil {
				client.Close()
				return nil, fmt.Errorf("loading scripts on %s: %w", addr, err)
			}
		}
	}
	return client, nil
}

var errNotCluster = errors.New("not a Redis Cluster (cluster_enabled is off)")

// unreachable tells a Redis that did not answer (down, starting, out of
// reach: retrying may help) from one that answered and refused us (a wrong
// password, a TLS handshake it or we refused, a reset, not a Cluster:
// retrying will not).
func unreachable(err error) bool {
	var dns *net.DNSError
	if e, ok := rueidis.IsRedisErr(err); ok {
		return e.IsLoading()
	}
	return errKind(err) == errKindTimeout || errors.As(err, &dns) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// connectLater retries connect, backing off from 250 ms to 5 s, until it
// succeeds or Close is called.
func (r *Redis) connectLater(opt rueidis.ClientOption, o RedisOptions, where string) {
	wait := 250 * time.Millisecond
	for attempt := 2; ; attempt++ {
		select {
		case <-r.closing:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
		client, err := r.connect(context.Background(), opt, o)
		if err != nil {
			if attempt%10 == 0 || !unreachable(err) {
				o.Log.Error("state: redis still not connected", "redis", where, "attempt", attempt, "err", err)
			}
			continue
		}
		r.conn.Store(&redisConn{client})
		select {
		case <-r.closing: // Close ran meanwhile: it did not see this client
			client.Close()
			return
		default:
		}
		o.Log.Info("state: redis connected; shared state in use", "redis", where, "attempt", attempt)
		return
	}
}

func cmp0(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// Counter returns the sliding-window counters.
func (r *Redis) Counter() Counter { return &r.counter }

// Distinct returns the distinct-member counts.
func (r *Redis) Distinct() Distinct { return &r.distinct }

// Flags returns the expiring flags.
func (r *Redis) Flags() Flags { return &r.flags }

// Complaints returns the complaint log.
func (r *Redis) Complaints() Complaints { return &r.complaints }

// Concurrency returns the calls-in-progress slots.
func (r *Redis) Concurrency() Concurrency { return &r.concurrent }

// Once returns the replay cache shared by all nodes.
func (r *Redis) Once() Once { return &r.once }

// Close closes the connections (or stops connecting); calls made
// afterwards fail.
func (r *Redis) Close() error {
	r.close1.Do(func() {
		close(r.closing)
		if c := r.conn.Load(); c != nil {
			c.client.Close()
		}
	})
	return nil
}

// Once remembers keys for a time: the verifier's replay cache shared by all
// nodes.
type Once interface {
	// Seen reports whether key was claimed and has not expired (EXISTS).
	Seen(ctx context.Context, key string, now time.Time) (bool, error)
	// Claim records key for ttl unless it is already there (SET key 1 NX
	// PX ttl): of any number of concurrent Claims of one key, exactly one
	// returns true.
	Claim(ctx context.Context, key string, ttl time.Duration, now time.Time) (bool, error)
}

// key is the Redis key of one structure's key: prefix, a letter for the
// structure and the key as a {hash tag}, so everything a script touches
// for it lives in one Cluster slot.
func (r *Redis) key(kind, key string) string {
	return r.prefix + kind + ":{" + key + "}"
}

// do runs the command that build makes under the operation deadline and
// records it.
func (r *Redis) do(ctx context.Context, op string, build func(rueidis.Builder) rueidis.Completed) rueidis.RedisResult {
	client, err := r.client()
	if err != nil {
		r.m.errors.WithLabelValues(errKind(err)).Inc()
		return rueidis.NewErrorResult(err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	start := time.Now()
	res := client.Do(ctx, build(client.B()))
	r.observe(op, start, res.Error())
	return res
}

// cacheObserve counts a read through the client-side cache.
func (r *Redis) cacheObserve(res rueidis.RedisResult) {
	if res.IsCacheHit() {
		r.m.cacheHits.Inc()
	} else {
		r.m.cacheMisses.Inc()
	}
}

func (r *Redis) observe(op string, start time.Time, err error) {
	r.m.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !rueidis.IsRedisNil(err) {
		r.m.errors.WithLabelValues(errKind(err)).Inc()
	}
}

// script is a Lua script run by SHA.
type script struct{ src, sha string }

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

func (s *script) evalsha(b rueidis.Builder, key string, args []string) rueidis.Completed {
	return b.Evalsha().Sha1(s.sha).Numkeys(1).Key(key).Arg(args...).Build()
}

func (s *script) eval(b rueidis.Builder, key string, args []string) rueidis.Completed {
	return b.Eval().Script(s.src).Numkeys(1).Key(key).Arg(args...).Build()
}

// Times in Redis: sorted-set scores are µs since the epoch (exact in a
// double until the year 2255), expiries are ms rounded up.
func micros(t time.Time) string { return strconv.FormatInt(floorDiv(t.UnixNano(), 1000), 10) }

func microsNs(ns int64) string { return strconv.FormatInt(floorDiv(ns, 1000), 10) }

func durMicros(d time.Duration) string { return strconv.FormatInt(int64(d/time.Microsecond), 10) }

func ceilMillis(d time.Duration) int64 {
	if d <= 0 {
		return 1
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return max(int64(ms), 1)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// wrap names the structure and key of a failed operation.
func wrap(structure, key string, err error) error {
	return fmt.Errorf("redis %s %q: %w", structure, key, err)
}

// asInt reads an integer reply.
func asInt(res rueidis.RedisResult) (int, error) {
	n, err := res.AsInt64()
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt || n < math.MinInt {
		return 0, errors.New("reply out of range")
	}
	return int(n), nil
}
