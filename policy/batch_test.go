package policy

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/policy/store/redistest"
	"github.com/stirgate/stirgate/sip"
)

// batchStores are the stores the batching tests run on: Memory and a
// Redis on loopback (skipped without redis-server), each with a fresh key
// prefix.
func batchStores(t *testing.T) (names []string, stores []store.Store, srv *redistest.Server) {
	names, stores = []string{"memory"}, []store.Store{store.NewMemory()}
	if testing.Short() {
		return
	}
	srv = redistest.Start(t)
	r, err := store.NewRedis(context.Background(), store.RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Timeout: 2 * time.Second, KeyPrefix: "batch:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return append(names, "redis"), append(stores, r), srv
}

// threeStateful are three stateful rules of the policy stage: five store
// operations per call (a rate counter, three bombing counters, a one-ring
// flag).
func threeStateful() []RuleConfig {
	return []RuleConfig{
		{Name: "per-caller", Type: "rate", Key: "caller", Limit: 4, Window: time.Minute, Action: ActionConfig{Type: "reject"}},
		{Name: "bombing", Type: "bombing", Action: ActionConfig{Type: "reject"}},
		{Name: "wangiri", Type: "one_ring", Action: ActionConfig{Type: "reject"}},
	}
}

// roundTrips reads the stage's histogram: observations, and how many were
// at most 0 and at most 1 round trip.
func roundTrips(t *testing.T, reg *prometheus.Registry, stage string) (count, le0, le1 uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "stirgate_policy_store_round_trips" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabel(m, "stage", stage) {
				continue
			}
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				switch b.GetUpperBound() {
				case 0:
					le0 = b.GetCumulativeCount()
				case 1:
					le1 = b.GetCumulativeCount()
				}
			}
			return h.GetSampleCount(), le0, le1
		}
	}
	return 0, 0, 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// redisStats reads, in one INFO, the reads Redis processed (every read
// of a client connection) and the calls of a few commands.
func redisStats(t *testing.T, srv *redistest.Server) (reads, evalsha, get int) {
	t.Helper()
	info := srv.Do("INFO", "stats", "commandstats")
	field := func(name string) int {
		m := regexp.MustCompile(`(?m)^` + name + `:(?:calls=)?(\d+)`).FindStringSubmatch(info)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return field("total_reads_processed"), field("cmdstat_evalsha"), field("cmdstat_get")
}

// TestStageIsOneRoundTrip: a call through a policy stage with three
// stateful rules (five store operations) waits for exactly one Redis
// round trip, as the stage's metric says and Redis confirms (one read of
// the connection: the four scripts and the one-ring flag's plain GET);
// Memory makes none. Memory and Redis decide the
// same calls alike.
func TestStageIsOneRoundTrip(t *testing.T) {
	names, stores, srv := batchStores(t)
	ctx := context.Background()
	var decisions []string
	for i, st := range stores {
		reg := prometheus.NewRegistry()
		h := Handler{Engine: compileOn(t, st, threeStateful()...), Metrics: NewMetrics(reg), Now: func() time.Time { return now }}
		if err := st.Flags().Set(ctx, keyOneRing+"447012345678", time.Hour, now); err != nil {
			t.Fatal(err)
		}
		var got []string
		const calls = 7
		for c := range calls {
			caller := "14155550100"
			if c == calls-1 {
				caller = "447012345678" // flagged as one-ring
			}
			if names[i] == "redis" && c == 3 {
				// A steady-state call: Redis sees one read, four
				// scripts and one GET.
				reads, evals, gets := redisStats(t, srv)
				call := &sip.Call{CallID: fmt.Sprint("c", c), Realm: "outside", Orig: caller, Dest: "12025550199", Source: netip.MustParseAddrPort("192.0.2.1:5060")}
				err := h.HandleCall(ctx, call)
				got = append(got, fmt.Sprint(err, call.Notes))
				reads2, evals2, gets2 := redisStats(t, srv)
				// redis-cli's reads: the first one's end of connection,
				// the second one's command.
				if d := reads2 - reads - 2; d != 1 {
					t.Errorf("Redis read %d times for one call, want 1 (one round trip)", d)
				}
				if d := evals2 - evals; d != 4 {
					t.Errorf("Redis ran %d scripts for one call, want 4 (rate, 3 bombing thresholds)", d)
				}
				if d := gets2 - gets; d != 1 {
					t.Errorf("Redis ran %d GETs, want 1 (the flag read rides in the batch)", d)
				}
				continue
			}
			call := &sip.Call{CallID: fmt.Sprint("c", c), Realm: "outside", Orig: caller, Dest: "12025550199", Source: netip.MustParseAddrPort("192.0.2.1:5060")}
			err := h.HandleCall(ctx, call)
			got = append(got, fmt.Sprint(err, call.Notes))
		}
		count, le0, le1 := roundTrips(t, reg, "policy")
		wantLE0 := uint64(0)
		if names[i] == "memory" {
			wantLE0 = calls
		}
		if count != calls || le1 != calls || le0 != wantLE0 {
			t.Errorf("%s: round trips histogram: %d calls, %d with 0, %d with at most 1; want %d, %d, %d", names[i], count, le0, le1, calls, wantLE0, calls)
		}
		decisions = append(decisions, strings.Join(got, "\n"))
	}
	if !strings.Contains(decisions[0], "rule per-caller") || !strings.Contains(decisions[0], "rule wangiri") {
		t.Fatalf("the rate limit or the one-ring flag did not reject:\n%s", decisions[0])
	}
	for i := range decisions {
		if decisions[i] != decisions[0] {
			t.Errorf("%s decides\n%s\n%s decides\n%s", names[0], decisions[0], names[i], decisions[i])
		}
	}
}

// TestBatchCountsAfterReject: a stage's stateful rules count the call
// even when an earlier rule of the stage rejects it (their operations go
// in one batch before any decides), on Memory as on Redis; a stateless
// rule that rejects first still stops everything after it.
func TestBatchCountsAfterReject(t *testing.T) {
	names, stores, _ := batchStores(t)
	ctx := context.Background()
	for i, st := range stores {
		f := File{Lists: []ListConfig{{Name: "spam", Numbers: []string{"447012345678"}}}, Rules: []RuleConfig{
			{Name: "block", Type: "list", Number: "caller", Lists: []string{"spam"}, Action: ActionConfig{Type: "reject"}},
			{Name: "strict", Type: "rate", Key: "caller", Limit: 1, Window: time.Minute, Action: ActionConfig{Type: "reject"}},
			{Name: "loose", Type: "rate", Key: "caller", Limit: 100, Window: time.Minute, Action: ActionConfig{Type: "reject"}},
		}}
		f.ApplyDefaults()
		if err := f.Validate(); err != nil {
			t.Fatal(err)
		}
		e, err := Compile([]File{f}, nil, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		for c := range 3 {
			d := e.Evaluate(ctx, Input{Realm: "outside", Caller: "14155550100", Callee: "12025550199"}, now)
			if (c > 0) != (d.Reject != nil) {
				t.Fatalf("%s: call %d rejected=%v", names[i], c, d.Reject != nil)
			}
		}
		if n, err := st.Counter().Count(ctx, "rate:loose:14155550100", time.Minute, now); err != nil || n != 3 {
			t.Errorf("%s: the rule after the rejecting one counted %d (%v), want every call: 3", names[i], n, err)
		}
		e.Evaluate(ctx, Input{Realm: "outside", Caller: "447012345678", Callee: "12025550199"}, now)
		if n, _ := st.Counter().Count(ctx, "rate:strict:447012345678", time.Minute, now); n != 0 {
			t.Errorf("%s: a call the list rejected first was counted %d times, want 0", names[i], n)
		}
	}
}
