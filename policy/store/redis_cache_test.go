package store

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stirgate/stirgate/policy/store/redistest"
)

func cacheCounts(r *Redis) (hits, misses float64) {
	return testutil.ToFloat64(r.m.cacheHits), testutil.ToFloat64(r.m.cacheMisses)
}

// awaitFlag polls a's Get of key (bounded) until it says ok with until.
func awaitFlag(t *testing.T, a *Redis, key string, until time.Time, now time.Time) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, ok, err := a.Flags().Get(context.Background(), key, now)
		if err != nil {
			t.Fatal(err)
		}
		if ok && u.Equal(until) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A still reads %q as %v, %v 5s after node B set it until %v", key, u, ok, until)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRedisFlagCache: two nodes on one Redis. Node A's flag reads are
// served from its client-side cache after the first (a miss, then hits);
// node B sets the flag and Redis invalidates A's copy, so A reads the new
// value; a flag's cached copy ends with the flag's own expiry.
func TestRedisFlagCache(t *testing.T) {
	srv := redistest.Start(t)
	opts := RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, KeyPrefix: "shared:"}
	a, b := openRedis(t, opts), openRedis(t, opts)
	ctx := context.Background()
	now := time.Now()

	for i, want := range []struct{ hits, misses float64 }{{0, 1}, {1, 1}, {2, 1}} {
		if _, ok, err := a.Flags().Get(ctx, "caller", now); ok || err != nil {
			t.Fatalf("get %d of an unset flag: %v, %v", i, ok, err)
		}
		if h, m := cacheCounts(a); h != want.hits || m != want.misses {
			t.Fatalf("after get %d: hits %v misses %v, want %v %v", i, h, m, want.hits, want.misses)
		}
	}
	if err := b.Flags().Set(ctx, "caller", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	awaitFlag(t, a, "caller", now.Add(time.Hour), now)
	// B clears it: A's copy is invalidated again.
	if err := b.Flags().Set(ctx, "caller", 0, now); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok, err := a.Flags().Get(ctx, "caller", now); err != nil {
			t.Fatal(err)
		} else if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node A still reads a flag node B cleared")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A flag that lives 300ms in Redis is cached no longer: after its
	// expiry A's read is a miss (Redis's PTTL bounds the cached copy).
	if err := b.Flags().Set(ctx, "short", 300*time.Millisecond, time.Now()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := a.Flags().Get(ctx, "short", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	h0, m0 := cacheCounts(a)
	if h0 < 1 {
		t.Fatalf("the second read of a set flag was not a cache hit (hits %v)", h0)
	}
	time.Sleep(400 * time.Millisecond)
	if _, ok, err := a.Flags().Get(ctx, "short", time.Now()); ok || err != nil {
		t.Fatalf("expired flag: %v, %v", ok, err)
	}
	if h, m := cacheCounts(a); h != h0 || m != m0+1 {
		t.Fatalf("read after the flag's expiry: hits %v->%v misses %v->%v, want a miss", h0, h, m0, m)
	}
}

// TestRedisCacheSurvivesTimeout: a timed-out call does not close the
// connection once it pipelines (a cached read put it there): the cached
// flag is still answered while Redis is paused and after, and the
// connection still gets invalidations (another node's Set is seen).
func TestRedisCacheSurvivesTimeout(t *testing.T) {
	srv := redistest.Start(t)
	opts := RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, KeyPrefix: "shared:", Timeout: 20 * time.Millisecond}
	a, b := openRedis(t, opts), openRedis(t, opts)
	ctx := context.Background()
	now := time.Now()
	for range 2 {
		if _, _, err := a.Flags().Get(ctx, "k", now); err != nil {
			t.Fatal(err)
		}
	}
	if reply := srv.Do("CLIENT", "PAUSE", "1500", "ALL"); reply != "OK" {
		t.Fatalf("CLIENT PAUSE: %q", reply)
	}
	h0, _ := cacheCounts(a)
	if _, ok, err := a.Flags().Get(ctx, "k", now); ok || err != nil {
		t.Fatalf("cached read while Redis is paused: %v, %v", ok, err)
	}
	if h, _ := cacheCounts(a); h != h0+1 {
		t.Fatal("the read while Redis is paused was not a cache hit")
	}
	if _, err := a.Counter().Add(ctx, "c", 1, time.Minute, now); err == nil {
		t.Fatal("a counter call while Redis is paused did not time out")
	}
	if _, ok, err := a.Flags().Get(ctx, "k", now); ok || err != nil {
		t.Fatalf("cached read after a timeout: %v, %v", ok, err)
	}
	if h, _ := cacheCounts(a); h != h0+2 {
		t.Fatal("the read after a timeout was not a cache hit: the timeout dropped the cache")
	}
	// After the pause, B's Set reaches A's cache as an invalidation.
	deadline := time.Now().Add(10 * time.Second)
	for b.Flags().Set(ctx, "k", time.Hour, now) != nil {
		if time.Now().After(deadline) {
			t.Fatal("Redis did not answer again after the pause")
		}
		time.Sleep(20 * time.Millisecond)
	}
	awaitFlag(t, a, "k", now.Add(time.Hour), now)
}

// TestRedisBatchAfterScriptFlush: a Redis that forgot the scripts (a
// restart, a failover) answers a batch's EVALSHAs with NOSCRIPT; they go
// again as EVAL in one more round trip, with the right answers.
func TestRedisBatchAfterScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}})
	ctx := context.Background()
	now := time.Now()
	ops := []Op{
		{Kind: OpCounterAdd, Key: "a", N: 1, Window: time.Minute},
		{Kind: OpDistinctAdd, Key: "a", Member: "m", Window: time.Minute},
		{Kind: OpComplaintsCount, Key: "a", Window: time.Minute},
	}
	res := make([]Result, len(ops))
	if trips := Run(ctx, r, ops, now, res); trips != 1 || res[0].N != 1 || res[1].N != 1 {
		t.Fatalf("first batch: %d round trips, %+v", trips, res)
	}
	if reply := srv.Do("SCRIPT", "FLUSH"); reply != "OK" {
		t.Fatalf("SCRIPT FLUSH: %q", reply)
	}
	if trips := Run(ctx, r, ops, now, res); trips != 2 || res[0].N != 2 || res[1].N != 1 || res[0].Err != nil {
		t.Fatalf("batch after SCRIPT FLUSH: %d round trips, %+v; want 2 and counts 2, 1", trips, res)
	}
}

// commandCalls is how many times srv ran cmd (INFO commandstats; 0 when
// never).
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	t.Helper()
	for _, l := range strings.Split(srv.Do("INFO", "commandstats"), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_"+cmd+":calls="); ok {
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			if err != nil {
				t.Fatalf("commandstats line %q: %v", l, err)
			}
			return n
		}
	}
	return 0
}

// TestRedisBatchFlagReads: a stage's flag reads go through the client-side
// cache only when the batch has nothing else (a hit then saves the round
// trip); beside other operations they are plain GETs in the batch's one
// round trip, never a cache miss's CLIENT CACHING + MULTI/GET/PTTL/EXEC,
// and they read what another node just set.
func TestRedisBatchFlagReads(t *testing.T) {
	srv := redistest.Start(t)
	opts := RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, KeyPrefix: "shared:"}
	a, b := openRedis(t, opts), openRedis(t, opts)
	ctx := context.Background()
	now := time.Now()
	res := make([]Result, 2)

	flagOnly := []Op{{Kind: OpFlagsGet, Key: "caller"}}
	for i, want := range []int{1, 0} { // a miss, then a hit: no round trip
		if trips := Run(ctx, a, flagOnly, now, res[:1]); trips != want || res[0].Err != nil || res[0].OK {
			t.Fatalf("flag-only batch %d: %d round trips, %+v; want %d and not set", i, trips, res[0], want)
		}
	}
	if h, m := cacheCounts(a); h != 1 || m != 1 {
		t.Fatalf("flag-only batches: cache hits %v misses %v, want 1 and 1", h, m)
	}

	caching := commandCalls(t, srv, "client|caching")
	if err := b.Flags().Set(ctx, "other", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	mixed := []Op{{Kind: OpCounterAdd, Key: "caller", N: 1, Window: time.Minute}, {Kind: OpFlagsGet, Key: "other"}}
	for i := range 3 {
		if trips := Run(ctx, a, mixed, now, res); trips != 1 || res[0].N != i+1 || !res[1].OK || !res[1].Until.Equal(now.Add(time.Hour)) {
			t.Fatalf("mixed batch %d: %d round trips, %+v; want 1, count %d and the flag node B set", i, trips, res, i+1)
		}
	}
	if got := commandCalls(t, srv, "client|caching"); got != caching {
		t.Errorf("mixed batches sent CLIENT CACHING %d times: their flag reads went through the cache", got-caching)
	}
	if h, m := cacheCounts(a); h != 1 || m != 1 {
		t.Errorf("mixed batches changed the cache counts to hits %v misses %v", h, m)
	}
}
