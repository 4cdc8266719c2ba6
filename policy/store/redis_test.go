package store

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stirgate/stirgate/policy/store/redistest"
)

// redisCalls is one call of every Redis operation, for the failure tests:
// each returns the call's error.
var redisCalls = []struct {
	op, structure string
	call          func(ctx context.Context, r *Redis) error
}{
	{opCounterAdd, "counter", func(ctx context.Context, r *Redis) error {
		_, err := r.Counter().Add(ctx, "k", 1, time.Minute, time.Now())
		return err
	}},
	{opCounterCount, "counter", func(ctx context.Context, r *Redis) error {
		_, err := r.Counter().Count(ctx, "k", time.Minute, time.Now())
		return err
	}},
	{opDistinctAdd, "distinct", func(ctx context.Context, r *Redis) error {
		_, err := r.Distinct().Add(ctx, "k", "m", time.Minute, time.Now())
		return err
	}},
	{opFlagsSet, "flags", func(ctx context.Context, r *Redis) error {
		return r.Flags().Set(ctx, "k", time.Minute, time.Now())
	}},
	{opFlagsGet, "flags", func(ctx context.Context, r *Redis) error {
		_, _, err := r.Flags().Get(ctx, "k", time.Now())
		return err
	}},
	{opComplaintsAdd, "complaints", func(ctx context.Context, r *Redis) error {
		return r.Complaints().Add(ctx, "k", time.Now())
	}},
	{opComplaintsCount, "complaints", func(ctx context.Context, r *Redis) error {
		_, err := r.Complaints().Count(ctx, "k", time.Minute, time.Now())
		return err
	}},
	{opConcurrencyAcquire, "concurrency", func(ctx context.Context, r *Redis) error {
		_, err := r.Concurrency().Acquire(ctx, "k", "call", time.Minute, time.Now())
		return err
	}},
	{opConcurrencyRelease, "concurrency", func(ctx context.Context, r *Redis) error {
		return r.Concurrency().Release(ctx, "k", "call")
	}},
	{opOnceSeen, "once", func(ctx context.Context, r *Redis) error {
		_, err := r.Once().Seen(ctx, "k", time.Now())
		return err
	}},
	{opOnceClaim, "once", func(ctx context.Context, r *Redis) error {
		_, err := r.Once().Claim(ctx, "k", time.Minute, time.Now())
		return err
	}},
}

func errCount(r *Redis, kind string) float64 {
	return testutil.ToFloat64(r.m.errors.WithLabelValues(kind))
}

// waitUp polls (bounded) until every operation succeeds again.
func waitUp(t *testing.T, r *Redis, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, c := range redisCalls {
		for {
			err := c.call(context.Background(), r)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s still failing: %v", what, c.op, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestRedisTimeout: a Redis that does not answer (CLIENT PAUSE: every
// command waits, the OK says the pause has begun) is an error at the
// operation's deadline, a deadline error named with the structure and key,
// counted as a timeout; once Redis answers again, the same client works.
func TestRedisTimeout(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 20 * time.Millisecond
	// No client-side cache: a cached flag read would be answered during the
	// pause (TestRedisCacheSurvivesTimeout).
	r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Timeout: timeout, CacheTTL: -1})
	waitUp(t, r, "before the pause")

	const pause = 1500 * time.Millisecond
	if reply := srv.Do("CLIENT", "PAUSE", itoa(pause.Milliseconds()), "ALL"); reply != "OK" {
		t.Fatalf("CLIENT PAUSE: %q", reply)
	}
	for _, c := range redisCalls {
		before := errCount(r, errKindTimeout)
		start := time.Now()
		err := c.call(context.Background(), r)
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s while Redis is paused: %v, want a deadline error", c.op, err)
		}
		if want := `redis ` + c.structure + ` "k"`; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not name %s", c.op, err, want)
		}
		// Loose: the call gave up at its deadline, not when Redis answered.
		if took >= pause/2 {
			t.Errorf("%s took %v with a %v timeout: it waited for Redis", c.op, took, timeout)
		}
		if got := errCount(r, errKindTimeout) - before; got != 1 {
			t.Errorf("%s: timeout errors +%v, want +1", c.op, got)
		}
	}
	waitUp(t, r, "after the pause")
}

// TestRedisReconnect: Redis stopped, calls fail as connection errors;
// Redis started again on the same port, the same client works again.
func TestRedisReconnect(t *testing.T) {
	srv := redistest.Start(t)
	r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	if _, err := r.Counter().Add(ctx, "k", 1, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	for _, c := range redisCalls {
		err := c.call(ctx, r)
		if err == nil {
			t.Fatalf("%s with Redis stopped: no error", c.op)
		}
		if !strings.Contains(err.Error(), `redis `+c.structure+` "k"`) {
			t.Errorf("%s: error %q does not name the structure and key", c.op, err)
		}
	}
	if n := errCount(r, errKindConnection); n < float64(len(redisCalls)) {
		t.Errorf("connection errors %v, want >= %d (timeouts %v, other %v)", n, len(redisCalls),
			errCount(r, errKindTimeout), errCount(r, errKindOther))
	}

	srv.Restart()
	waitUp(t, r, "after the restart")
	// The restart emptied Redis (no persistence): the scripts are loaded
	// again (EVAL after NOSCRIPT) and the counter starts over.
	if n, err := r.Counter().Add(ctx, "k2", 2, time.Minute, time.Now()); err != nil || n != 2 {
		t.Fatalf("counter after the restart = %d, %v; want 2", n, err)
	}
}

// TestRedisSilentServer: Redis replaced by a server that accepts
// connections and never answers (a hung host): the reconnection's
// handshake must not hold a call past its deadline (DialTimeout is far
// longer).
func TestRedisSilentServer(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 20 * time.Millisecond
	r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Timeout: timeout, DialTimeout: 5 * time.Second})
	waitUp(t, r, "before")
	srv.Stop()
	l, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		t.Skipf("port taken again: %v", err)
	}
	var conns sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close(); conns.Wait() })
	conns.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { <-done; c.Close() })
		}
	})
	for _, c := range redisCalls {
		start := time.Now()
		err := c.call(context.Background(), r)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s on a silent server: no error", c.op)
		}
		// Loose: far below the 5s dial timeout.
		if took >= 2*time.Second {
			t.Errorf("%s took %v with a %v timeout (%v)", c.op, took, timeout, err)
		}
	}
}

// TestNewRedisErrors: a connection error names the address and cause and
// never the password; the mode must match the server.
func TestNewRedisErrors(t *testing.T) {
	const secret = "s3cr3t-PASSWORD"
	srv := redistest.Start(t)
	srv.Do("CONFIG", "SET", "requirepass", secret)
	plain := redistest.Start(t)
	stopped := redistest.Start(t)
	stopped.Stop()
	tests := []struct {
		name string
		o    RedisOptions
		want string // in the error
	}{
		{"refused", RedisOptions{Mode: "standalone", Addrs: []string{stopped.Addr}, Password: secret}, stopped.Addr},
		{"wrong password", RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Password: secret + "x"}, srv.Addr},
		{"no password", RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}}, srv.Addr},
		{"cluster mode on a plain server", RedisOptions{Mode: "cluster", Addrs: []string{plain.Addr}, Password: secret}, "not a Redis Cluster"},
		{"bad mode", RedisOptions{Mode: "ring", Addrs: []string{plain.Addr}}, `mode "ring"`},
		{"no address", RedisOptions{Mode: "standalone"}, "no address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.DialTimeout = time.Second
			r, err := NewRedis(context.Background(), tt.o)
			if err == nil {
				r.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	// The right password works.
	r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Password: secret})
	if err := r.Flags().Set(context.Background(), "k", time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestRedisMetricsRegistered: the metric names are stable and registered
// when asked; a second store on the same registry is an error, not a panic.
func TestRedisMetricsRegistered(t *testing.T) {
	srv := redistest.Start(t)
	reg := prometheus.NewRegistry()
	r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Registerer: reg})
	if _, _, err := r.Flags().Get(context.Background(), "k", time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "stirgate_state_redis_seconds", "stirgate_state_redis_errors_total"); err != nil || n != len(redisOps)+len(redisErrKinds) {
		t.Fatalf("gathered %d series, %v; want %d", n, err, len(redisOps)+len(redisErrKinds))
	}
	if got := testutil.ToFloat64(r.m.errors.WithLabelValues(errKindTimeout)); got != 0 {
		t.Fatalf("timeouts %v", got)
	}
	if _, err := NewRedis(context.Background(), RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Registerer: reg}); err == nil {
		t.Fatal("second registration: no error")
	}
}

// TestRedisUnreachableAtStart: with Background, a Redis that is down when
// the node starts is not fatal: every operation fails at once with
// ErrNotConnected (counted as a connection error, so rules apply
// on_store_error) until Redis comes up; then the store connects by itself
// and operations, batches and the replay cache work. Without Background,
// the same start is an error, and so is a wrong password with it.
func TestRedisUnreachableAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	ctx := context.Background()
	opts := RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, DialTimeout: 200 * time.Millisecond}
	if r, err := NewRedis(ctx, opts); err == nil {
		r.Close()
		t.Fatal("NewRedis without Background connected to a stopped Redis")
	}
	opts.Background, opts.Registerer = true, prometheus.NewRegistry()
	r, err := NewRedis(ctx, opts)
	if err != nil {
		t.Fatalf("NewRedis with Background: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	now := time.Now()
	if _, err := r.Counter().Add(ctx, "c", 1, time.Minute, now); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Counter.Add before Redis is up: %v, want ErrNotConnected", err)
	}
	res := make([]Result, 2)
	ops := []Op{{Kind: OpCounterAdd, Key: "c", N: 1, Window: time.Minute}, {Kind: OpFlagsGet, Key: "f"}}
	if trips := Run(ctx, r, ops, now, res); trips != 0 || !errors.Is(res[0].Err, ErrNotConnected) || !errors.Is(res[1].Err, ErrNotConnected) {
		t.Fatalf("batch before Redis is up: %d round trips, %+v", trips, res)
	}
	if _, err := r.Once().Claim(ctx, "p", time.Minute, now); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Once.Claim before Redis is up: %v", err)
	}
	if got := testutil.ToFloat64(r.m.errors.WithLabelValues(errKindConnection)); got != 4 {
		t.Errorf("connection errors counted: %v, want 4", got)
	}

	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := r.Counter().Add(ctx, "c", 1, time.Minute, now)
		if err == nil {
			if n != 1 {
				t.Fatalf("first count after connecting: %d, want 1", n)
			}
			break
		}
		if !errors.Is(err, ErrNotConnected) || time.Now().After(deadline) {
			t.Fatalf("Redis is up, the store still fails: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if trips := Run(ctx, r, ops, now, res); trips != 1 || res[0].Err != nil || res[0].N != 2 || res[1].Err != nil {
		t.Fatalf("batch after connecting: %d round trips, %+v", trips, res)
	}
	if ok, err := r.Once().Claim(ctx, "p", time.Minute, now); !ok || err != nil {
		t.Fatalf("Once.Claim after connecting: %v, %v", ok, err)
	}

	// Retrying cannot fix a wrong password: still an error with Background.
	acl := redistest.StartOptions(t, redistest.Options{ACL: []string{"user app on >right ~* +@all"}})
	bad := RedisOptions{Mode: "standalone", Addrs: []string{acl.Addr}, Username: "app", Password: "wrong", Background: true}
	if r, err := NewRedis(ctx, bad); err == nil {
		r.Close()
		t.Fatal("NewRedis with a wrong password and Background: no error")
	}
}
