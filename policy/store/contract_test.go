package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stirgate/stirgate/policy/store/redistest"
)

// The store contract: Memory, Redis standalone and a 3-master Redis Cluster
// give the same answers for the same calls and clock. Every case runs on a
// fresh store (Memory) or a fresh key prefix (Redis).
//
// Windows and ttls here are a minute or more: Redis drops idle keys on its
// own clock (PEXPIRE), which must not fire while a case runs on the
// injected one.

// Caps shared by every implementation under test.
const (
	contractMaxMembers    = 4
	contractMaxComplaints = 3
	contractRetention     = time.Hour
)

type contractImpl struct {
	name string
	// open returns an empty store (and its Once, nil for Memory).
	open func(t *testing.T) (Store, Once)
}

// contractImpls starts the Redis servers the implementations need, once
// for the whole test.
func contractImpls(t *testing.T) []contractImpl {
	memory := contractImpl{"memory", func(t *testing.T) (Store, Once) {
		return NewMemory(WithMaxMembers(contractMaxMembers), WithMaxComplaints(contractMaxComplaints),
			WithComplaintRetention(contractRetention)), nil
	}}
	if testing.Short() {
		return []contractImpl{memory}
	}
	single := redistest.Start(t)
	nodes := redistest.StartCluster(t, 3)
	return []contractImpl{
		memory,
		{"redis", func(t *testing.T) (Store, Once) {
			r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{single.Addr}})
			return r, r.Once()
		}},
		{"cluster", func(t *testing.T) (Store, Once) {
			r := openRedis(t, RedisOptions{Mode: "cluster", Addrs: []string{nodes[0].Addr, nodes[1].Addr}})
			return r, r.Once()
		}},
	}
}

var prefixSeq atomic.Int64

// openRedis connects with the contract caps, a generous timeout (the race
// detector is slow) and a key prefix of its own; closed in t.Cleanup.
func openRedis(t testing.TB, o RedisOptions) *Redis {
	t.Helper()
	o.MaxMembers, o.MaxComplaints, o.ComplaintRetention = contractMaxMembers, contractMaxComplaints, contractRetention
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = fmt.Sprintf("t%d:", prefixSeq.Add(1))
	}
	r, err := NewRedis(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// step is one call and the answer every implementation must give: a
// number, "+<until-t0>"/"-" for Flags.Get, "ok", or "invalid" for
// ErrInvalid.
type step struct {
	desc string
	do   func(ctx context.Context, s Store) (string, error)
	want string
}

func result(n int, err error) (string, error) { return fmt.Sprint(n), err }

func okResult(err error) (string, error) { return "ok", err }

func cAdd(key string, n int, w, dt time.Duration, want string) step {
	return step{fmt.Sprintf("counter.Add(%s, %d, %v, +%v)", key, n, w, dt), func(ctx context.Context, s Store) (string, error) {
		return result(s.Counter().Add(ctx, key, n, w, at(dt)))
	}, want}
}

func cCount(key string, w, dt time.Duration, want string) step {
	return step{fmt.Sprintf("counter.Count(%s, %v, +%v)", key, w, dt), func(ctx context.Context, s Store) (string, error) {
		return result(s.Counter().Count(ctx, key, w, at(dt)))
	}, want}
}

func dAdd(key, member string, w, dt time.Duration, want string) step {
	return step{fmt.Sprintf("distinct.Add(%s, %s, %v, +%v)", key, member, w, dt), func(ctx context.Context, s Store) (string, error) {
		return result(s.Distinct().Add(ctx, key, member, w, at(dt)))
	}, want}
}

func fSet(key string, ttl, dt time.Duration) step {
	return step{fmt.Sprintf("flags.Set(%s, %v, +%v)", key, ttl, dt), func(ctx context.Context, s Store) (string, error) {
		return okResult(s.Flags().Set(ctx, key, ttl, at(dt)))
	}, "ok"}
}

func fGet(key string, dt time.Duration, want string) step {
	return step{fmt.Sprintf("flags.Get(%s, +%v)", key, dt), func(ctx context.Context, s Store) (string, error) {
		until, ok, err := s.Flags().Get(ctx, key, at(dt))
		if !ok {
			return "-", err
		}
		return "+" + until.Sub(t0).String(), err
	}, want}
}

func pAdd(subject string, dt time.Duration) step {
	return step{fmt.Sprintf("complaints.Add(%s, +%v)", subject, dt), func(ctx context.Context, s Store) (string, error) {
		return okResult(s.Complaints().Add(ctx, subject, at(dt)))
	}, "ok"}
}

func pCount(subject string, w, dt time.Duration, want string) step {
	return step{fmt.Sprintf("complaints.Count(%s, %v, +%v)", subject, w, dt), func(ctx context.Context, s Store) (string, error) {
		return result(s.Complaints().Count(ctx, subject, w, at(dt)))
	}, want}
}

func nAcq(key, member string, ttl, dt time.Duration, want string) step {
	return step{fmt.Sprintf("concurrency.Acquire(%s, %s, %v, +%v)", key, member, ttl, dt), func(ctx context.Context, s Store) (string, error) {
		return result(s.Concurrency().Acquire(ctx, key, member, ttl, at(dt)))
	}, want}
}

func nRel(key, member string) step {
	return step{fmt.Sprintf("concurrency.Release(%s, %s)", key, member), func(ctx context.Context, s Store) (string, error) {
		return okResult(s.Concurrency().Release(ctx, key, member))
	}, "ok"}
}

type contractCase struct {
	name  string
	steps []step
}

func contractCases() []contractCase {
	const (
		s = time.Second
		m = time.Minute
		h = time.Hour
		w = time.Minute // counter: 12 buckets of 5s, t0 on a boundary
	)
	us := time.Microsecond
	return []contractCase{
		// Counter.
		{"counter/accumulates", []step{
			cAdd("a", 1, w, 0, "1"), cAdd("a", 2, w, s, "3"), cAdd("a", 1, w, 30*s, "4"), cCount("a", w, 59*s, "4"),
		}},
		{"counter/slides out bucket by bucket", []step{
			cAdd("a", 1, w, 0, "1"), cAdd("a", 1, w, 10*s, "2"), cAdd("a", 1, w, 20*s, "3"),
			cCount("a", w, 60*s-us, "3"), cCount("a", w, 60*s, "2"), cCount("a", w, 70*s, "1"), cCount("a", w, 80*s, "0"),
			cAdd("a", 1, w, 80*s, "1"),
		}},
		{"counter/late in bucket drops up to one bucket early", []step{
			cAdd("a", 1, w, 5*s-us, "1"), cCount("a", w, 60*s-us, "1"), cCount("a", w, 60*s, "0"),
		}},
		{"counter/idle key counts zero then restarts", []step{
			cAdd("a", 5, w, 0, "5"), cCount("a", w, h, "0"), cAdd("a", 1, w, h, "1"), cCount("a", w, h+59*s, "1"),
		}},
		{"counter/keys are independent", []step{
			cAdd("a", 3, w, 0, "3"), cAdd("b", 1, w, 0, "1"), cCount("a", w, 0, "3"), cCount("c", w, 0, "0"),
		}},
		{"counter/earlier now is the newest bucket", []step{
			cAdd("a", 1, w, 30*s, "1"), cAdd("a", 1, w, 0, "2"), cCount("a", w, 0, "2"),
			cCount("a", w, 85*s-us, "2"), cCount("a", w, 90*s, "0"),
		}},
		{"counter/another window resets", []step{
			cAdd("a", 5, w, 0, "5"), cCount("a", s, 0, "0"), cAdd("a", 1, s, 0, "1"), cCount("a", w, 0, "0"), cAdd("a", 2, w, 0, "2"),
		}},
		{"counter/n zero", []step{cAdd("a", 0, w, 0, "0"), cAdd("a", 2, w, 0, "2"), cAdd("a", 0, w, 0, "2")}},
		{"counter/bucket saturates", []step{
			cAdd("a", math.MaxUint32, w, 0, "4294967295"), cAdd("a", 1, w, 0, "4294967295"),
			cAdd("a", math.MaxInt, w, s, "4294967295"), cAdd("a", 1, w, 5*s, "4294967296"),
		}},
		{"counter/invalid", []step{
			cAdd("a", 1, 11, 0, "invalid"), cAdd("a", -1, w, 0, "invalid"), cCount("a", 0, 0, "invalid"),
		}},

		// Distinct (cap 4).
		{"distinct/counts members once", []step{
			dAdd("k", "a", 10*m, 0, "1"), dAdd("k", "b", 10*m, s, "2"), dAdd("k", "a", 10*m, 2*s, "2"), dAdd("j", "a", 10*m, 2*s, "1"),
		}},
		{"distinct/window edge", []step{
			dAdd("k", "a", 10*m, 0, "1"), dAdd("k", "b", 10*m, 10*m-us, "2"), dAdd("k", "c", 10*m, 10*m, "2"),
		}},
		{"distinct/re-add refreshes", []step{
			dAdd("k", "a", 10*m, 0, "1"), dAdd("k", "b", 10*m, m, "2"), dAdd("k", "a", 10*m, 9*m, "2"), dAdd("k", "c", 10*m, 11*m+30*s, "2"),
		}},
		{"distinct/earlier now keeps the later time", []step{
			dAdd("k", "a", 10*m, 5*m, "1"), dAdd("k", "a", 10*m, m, "1"), dAdd("k", "b", 10*m, 11*m, "2"),
		}},
		{"distinct/member cap", []step{
			dAdd("k", "a", 10*m, 0, "1"), dAdd("k", "b", 10*m, 0, "2"), dAdd("k", "c", 10*m, 0, "3"), dAdd("k", "d", 10*m, m, "4"),
			dAdd("k", "e", 10*m, 2*m, "4"),  // at the cap: not recorded
			dAdd("k", "a", 10*m, 3*m, "4"),  // present: refreshed
			dAdd("k", "e", 10*m, 10*m, "3"), // b and c left: a, d, e
		}},
		{"distinct/expired member at the cap comes back", []step{
			dAdd("k", "a", 10*m, 0, "1"), dAdd("k", "b", 10*m, 0, "2"), dAdd("k", "c", 10*m, 0, "3"), dAdd("k", "d", 10*m, 0, "4"),
			dAdd("k", "a", 10*m, 10*m, "1"),
		}},
		{"distinct/invalid", []step{dAdd("k", "a", 0, 0, "invalid")}},

		// Flags.
		{"flags/unknown", []step{fGet("x", 0, "-")}},
		{"flags/until and expiry", []step{
			fSet("x", 10*s, 0), fGet("x", 0, "+10s"), fGet("x", 10*s-us, "+10s"), fGet("x", 10*s, "-"),
		}},
		{"flags/last set wins", []step{
			fSet("x", h, 0), fSet("x", 10*s, 0), fGet("x", 20*s, "-"),
			fSet("y", 10*s, 0), fSet("y", h, 0), fGet("y", 20*s, "+1h0m0s"),
		}},
		{"flags/ttl <= 0 clears", []step{
			fSet("x", h, 0), fSet("x", 0, s), fGet("x", 2*s, "-"), fSet("y", h, 0), fSet("y", -s, s), fGet("y", s, "-"), fSet("z", -s, 0), fGet("z", 0, "-"),
		}},
		{"flags/set again after expiry", []step{fSet("x", 10*s, 0), fGet("x", 15*s, "-"), fSet("x", 10*s, 20*s), fGet("x", 25*s, "+30s")}},

		// Complaints (retention 1h, cap 3).
		{"complaints/count window edges", []step{
			pAdd("s", 0), pAdd("s", 10*m),
			pCount("s", 10*m, 10*m, "1"), // (0, 10m]: the one at 0 is out
			pCount("s", 10*m+us, 10*m, "2"),
			pCount("s", 10*m, 20*m, "0"),
			pCount("s", 20*m, 10*m, "2"),
			pCount("s", h, 5*m, "1"), // the one at 10m is after now
			pCount("t", h, 10*m, "0"),
		}},
		{"complaints/retention", []step{
			pAdd("s", 0), pAdd("s", h), pCount("s", 2*h, h, "1"), // the one at 0 is at newest-retention: dropped
			pAdd("s", 30*m), pCount("s", 2*h, h, "2"),
			pAdd("s", 0), pAdd("s", -s), pCount("s", 3*h, h, "2"), // at or before newest-retention: ignored
		}},
		{"complaints/cap drops the oldest", []step{
			pAdd("s", m), pAdd("s", 2*m), pAdd("s", 3*m), pCount("s", h, 3*m, "3"),
			pAdd("s", 4*m), pCount("s", h, 4*m, "3"), pCount("s", 2*m+30*s, 4*m, "3"),
			pAdd("s", 30*s), // older than every kept one: it is the one dropped
			pCount("s", h, 4*m, "3"), pCount("s", 2*m+15*s, 4*m, "3"), pCount("s", m+30*s, 4*m, "2"),
		}},
		{"complaints/same time twice", []step{pAdd("s", 0), pAdd("s", 0), pCount("s", m, 0, "2")}},
		{"complaints/invalid", []step{pCount("s", 0, 0, "invalid")}},

		// Concurrency.
		{"concurrency/acquire, renew, release", []step{
			nAcq("k", "a", h, 0, "1"), nAcq("k", "b", h, 0, "2"), nAcq("k", "a", h, s, "2"),
			nRel("k", "a"), nAcq("k", "c", h, 2*s, "2"), nRel("k", "zz"), nRel("nokey", "a"),
			nRel("k", "b"), nRel("k", "c"), nAcq("k", "d", h, 3*s, "1"),
		}},
		{"concurrency/ttl frees a slot", []step{
			nAcq("k", "a", m, 0, "1"), nAcq("k", "b", m, 30*s, "2"), nAcq("k", "c", m, m, "2"), nAcq("k", "d", m, 90*s, "2"),
		}},
		{"concurrency/renew extends", []step{
			nAcq("k", "a", m, 0, "1"), nAcq("k", "a", m, 50*s, "1"), nAcq("k", "b", m, 90*s, "2"),
		}},
		{"concurrency/renew shortens", []step{
			nAcq("k", "a", h, 0, "1"), nAcq("k", "a", m, 0, "1"), nAcq("k", "b", m, 2*m, "1"),
		}},
	}
}

// TestStoreContract starts one Redis and one Cluster for all of its parts.
func TestStoreContract(t *testing.T) {
	impls := contractImpls(t)
	t.Run("cases", func(t *testing.T) { testContractCases(t, impls) })
	t.Run("random", func(t *testing.T) { testContractRandom(t, impls) })
	t.Run("once", func(t *testing.T) { testOnce(t, impls) })
}

func testContractCases(t *testing.T, impls []contractImpl) {
	ctx := context.Background()
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			for _, tc := range contractCases() {
				t.Run(tc.name, func(t *testing.T) {
					st, _ := impl.open(t)
					for i, s := range tc.steps {
						got, err := s.do(ctx, st)
						if errors.Is(err, ErrInvalid) {
							got, err = "invalid", nil
						}
						if err != nil || got != s.want {
							t.Fatalf("step %d %s = %s, %v; want %s", i, s.desc, got, err, s.want)
						}
					}
				})
			}
		})
	}
}

// testContractRandom runs the same random calls on Memory and Redis
// (standalone and Cluster) and wants the same answers: what the cases
// above miss. Times are µs-aligned (Redis's resolution), windows and ttls a
// minute or more.
func testContractRandom(t *testing.T, impls []contractImpl) {
	if len(impls) < 2 {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 42))
		stores := make([]Store, len(impls))
		for i, impl := range impls {
			stores[i], _ = impl.open(t)
		}
		// One window per key, as in the policy (a key belongs to one rule):
		// after a window change the stores may differ on members older than
		// the old window (Memory drops a key idle for its last window at
		// random, Redis in real time by PEXPIRE; here time is virtual).
		keys := []string{"a", "b", "c"}
		windows := map[string]time.Duration{"a": time.Minute, "b": 2 * time.Minute, "c": 10 * time.Minute}
		members := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
		var now time.Duration
		for i := range 600 {
			// Mostly forward, sometimes back a little.
			now += time.Duration(rng.IntN(40_000_000)-5_000_000) * time.Microsecond
			key, member := keys[rng.IntN(len(keys))], members[rng.IntN(len(members))]
			wdw := windows[key]
			var s step
			switch rng.IntN(9) {
			case 0:
				s = cAdd(key, rng.IntN(3), wdw, now, "")
			case 1:
				s = cCount(key, wdw, now, "")
			case 2:
				s = dAdd(key, member, wdw, now, "")
			case 3:
				s = fSet(key, time.Duration(rng.IntN(180)-20)*time.Second, now)
			case 4:
				s = fGet(key, now, "")
			case 5:
				s = pAdd(key, now-time.Duration(rng.IntN(4000))*time.Second)
			case 6:
				s = pCount(key, wdw*time.Duration(1+rng.IntN(60)), now, "")
			case 7:
				s = nAcq(key, member, wdw, now, "")
			case 8:
				s = nRel(key, member)
			}
			var answers []string
			for _, st := range stores {
				got, err := s.do(ctx, st)
				if err != nil {
					t.Fatalf("seed %d call %d %s: %v", seed, i, s.desc, err)
				}
				answers = append(answers, got)
			}
			for j := range answers {
				if answers[j] != answers[0] {
					t.Fatalf("seed %d call %d %s: %s says %s, %s says %s", seed, i, s.desc,
						impls[0].name, answers[0], impls[j].name, answers[j])
				}
			}
		}
	}
}

// testOnce: the replay cache. Redis only (the verifier has its own memory
// replay store). Its expiry runs on Redis's clock (PX), not on now, so the
// test claims for 50ms and polls, bounded, until the key is gone.
func testOnce(t *testing.T, impls []contractImpl) {
	ctx := context.Background()
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			_, once := impl.open(t)
			if once == nil {
				t.Skip("no Once")
			}
			now := time.Now()
			if seen, err := once.Seen(ctx, "k", now); seen || err != nil {
				t.Fatalf("Seen before any claim = %v, %v", seen, err)
			}
			if ok, err := once.Claim(ctx, "k", 50*time.Millisecond, now); !ok || err != nil {
				t.Fatalf("first Claim = %v, %v; want true", ok, err)
			}
			if ok, err := once.Claim(ctx, "k", 50*time.Millisecond, now); ok || err != nil {
				t.Fatalf("second Claim = %v, %v; want false", ok, err)
			}
			if seen, err := once.Seen(ctx, "k", now); !seen || err != nil {
				t.Fatalf("Seen after the claim = %v, %v", seen, err)
			}
			if seen, _ := once.Seen(ctx, "other", now); seen {
				t.Fatal("another key is seen")
			}
			if _, err := once.Claim(ctx, "k", 0, now); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Claim with ttl 0: %v, want ErrInvalid", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				seen, err := once.Seen(ctx, "k", time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if !seen {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("claimed key still seen 5s after its 50ms ttl")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if ok, err := once.Claim(ctx, "k", time.Minute, time.Now()); !ok || err != nil {
				t.Fatalf("Claim after expiry = %v, %v; want true", ok, err)
			}

			// Concurrent claims of one key: exactly one wins.
			var wins atomic.Int32
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					if ok, err := once.Claim(ctx, "race", time.Minute, time.Now()); err != nil {
						t.Error(err)
					} else if ok {
						wins.Add(1)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d of 20 concurrent claims won, want 1", wins.Load())
			}
		})
	}
}

// TestRedisKeysHashTagged: every key of one structure and key lives in one
// Cluster slot ({key} hash tag), and nothing is left without an expiry.
func TestRedisKeysHashTagged(t *testing.T) {
	single := redistest.Start(t)
	r := openRedis(t, RedisOptions{Mode: "standalone", Addrs: []string{single.Addr}, KeyPrefix: "p:"})
	ctx := context.Background()
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.Counter().Add(ctx, "k", 1, time.Minute, now)
	must(err)
	_, err = r.Distinct().Add(ctx, "k", "m", time.Minute, now)
	must(err)
	must(r.Flags().Set(ctx, "k", time.Minute, now))
	must(r.Complaints().Add(ctx, "k", now))
	_, err = r.Concurrency().Acquire(ctx, "k", "call", time.Minute, now)
	must(err)
	_, err = r.Once().Claim(ctx, "k", time.Minute, now)
	must(err)
	client, err := r.client()
	must(err)
	keys := map[string]bool{}
	for _, k := range []string{"p:c:{k}", "p:d:{k}", "p:f:{k}", "p:p:{k}", "p:n:{k}", "p:o:{k}"} {
		ttl, err := client.Do(ctx, client.B().Pttl().Key(k).Build()).AsInt64()
		must(err)
		if ttl <= 0 {
			t.Errorf("key %s: PTTL %d, want an expiry", k, ttl)
		}
		keys[k] = true
	}
	all, err := client.Do(ctx, client.B().Keys().Pattern("*").Build()).AsStrSlice()
	must(err)
	for _, k := range all {
		if !keys[k] {
			t.Errorf("unexpected key %q", k)
		}
	}
	if len(all) != len(keys) || !strings.HasPrefix(all[0], "p:") {
		t.Errorf("keys %q", all)
	}
}

// TestBatchContract: random batches of operations through Run give the
// same results on Memory (one by one), Redis and a Cluster (Batch: one
// DoMulti, split by node on the Cluster), and Redis says each batch was
// one round trip. A batch never reads a flag it sets (Batcher's rule).
func TestBatchContract(t *testing.T) {
	impls := contractImpls(t)
	if len(impls) < 2 {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	stores := make([]Store, len(impls))
	for i, impl := range impls {
		stores[i], _ = impl.open(t)
	}
	rng := rand.New(rand.NewPCG(7, 42))
	windows := []time.Duration{time.Minute, 2 * time.Minute, 10 * time.Minute}
	keys := []string{"a", "b", "c"}
	members := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
	var now time.Duration
	for b := range 200 {
		now += time.Duration(rng.IntN(40_000_000)) * time.Microsecond
		var ops []Op
		setFlags := map[string]bool{}
		for range 1 + rng.IntN(6) {
			op := Op{Kind: OpKind(1 + rng.IntN(int(OpConcurrencyRelease))), Key: keys[rng.IntN(len(keys))],
				Member: members[rng.IntN(len(members))], N: rng.IntN(3), Window: windows[rng.IntN(len(windows))]}
			if op.Kind == OpFlagsSet {
				op.Window = time.Duration(rng.IntN(180)-20) * time.Second
				setFlags[op.Key] = true
			}
			if op.Kind == OpFlagsGet && setFlags[op.Key] {
				continue
			}
			ops = append(ops, op)
		}
		at := time.Unix(1_800_000_000, 0).Add(now)
		var answers []string
		for i, st := range stores {
			res := make([]Result, len(ops))
			trips := Run(ctx, st, ops, at, res)
			// One round trip; none on Memory, or when the batch only
			// reads flags the client-side cache holds.
			want := 1
			if impls[i].name == "memory" || (trips == 0 && onlyFlagGets(ops)) {
				want = 0
			}
			if trips != want {
				t.Fatalf("batch %d on %s: %d round trips, want %d", b, impls[i].name, trips, want)
			}
			var sb strings.Builder
			for j, r := range res {
				if r.Err != nil {
					t.Fatalf("batch %d on %s: op %d %+v: %v", b, impls[i].name, j, ops[j], r.Err)
				}
				fmt.Fprintf(&sb, "%d/%v/%d ", r.N, r.OK, r.Until.UnixNano())
			}
			answers = append(answers, sb.String())
		}
		for j := range answers {
			if answers[j] != answers[0] {
				t.Fatalf("batch %d %+v: %s says %s, %s says %s", b, ops, impls[0].name, answers[0], impls[j].name, answers[j])
			}
		}
	}
}

func onlyFlagGets(ops []Op) bool {
	for _, op := range ops {
		if op.Kind != OpFlagsGet {
			return false
		}
	}
	return true
}
