package policy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
)

// downStore is a store.Store whose every operation fails, as an
// unreachable Redis would.
type downStore struct{}

var errDown = errors.New("store down")

type downCounter struct{}
type downDistinct struct{}
type downFlags struct{}
type downComplaints struct{}
type downConcurrency struct{}

func (downStore) Counter() store.Counter         { return downCounter{} }
func (downStore) Distinct() store.Distinct       { return downDistinct{} }
func (downStore) Flags() store.Flags             { return downFlags{} }
func (downStore) Complaints() store.Complaints   { return downComplaints{} }
func (downStore) Concurrency() store.Concurrency { return downConcurrency{} }
func (downStore) Close() error                   { return nil }

func (downCounter) Add(context.Context, string, int, time.Duration, time.Time) (int, error) {
	return 0, errDown
}
func (downCounter) Count(context.Context, string, time.Duration, time.Time) (int, error) {
	return 0, errDown
}
func (downDistinct) Add(context.Context, string, string, time.Duration, time.Time) (int, error) {
	return 0, errDown
}
func (downFlags) Set(context.Context, string, time.Duration, time.Time) error { return errDown }
func (downFlags) Get(context.Context, string, time.Time) (time.Time, bool, error) {
	return time.Time{}, false, errDown
}
func (downComplaints) Add(context.Context, string, time.Time) error { return errDown }
func (downComplaints) Count(context.Context, string, time.Duration, time.Time) (int, error) {
	return 0, errDown
}
func (downConcurrency) Acquire(context.Context, string, string, time.Duration, time.Time) (int, error) {
	return 0, errDown
}
func (downConcurrency) Release(context.Context, string, string) error { return errDown }

// compileOn builds an engine of rules on st.
func compileOn(t *testing.T, st store.Store, rules ...RuleConfig) *Engine {
	t.Helper()
	f := File{Rules: rules}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := Compile([]File{f}, nil, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestOnStoreError: every rule type that keeps state, on a store that
// fails, records a store_error hit; open lets the call through, closed
// rejects it with the rule's rejection (503 with Retry-After for a tag
// rule), report mode only records.
func TestOnStoreError(t *testing.T) {
	reject := ActionConfig{Type: "reject"}
	tag := ActionConfig{Type: "tag", Header: "X-Risk", Value: "high"}
	rules := []RuleConfig{
		{Type: "rate", Key: "caller", Limit: 10, Window: time.Minute},
		{Type: "concurrent", Key: "customer", Limit: 10},
		{Type: "bombing"},
		{Type: "protect"},
		{Type: "one_ring"},
		{Type: "callback"},
		{Type: "reputation"},
	}
	for _, base := range rules {
		for _, tt := range []struct {
			mode, onError string
			action        ActionConfig
			wantCode      int // 0: not rejected
			wantRetry     int
		}{
			{"enforce", "", reject, 0, 0}, // default: open
			{"enforce", "open", reject, 0, 0},
			{"enforce", "closed", reject, map[string]int{"rate": 503, "concurrent": 503, "bombing": 486, "protect": 486, "one_ring": 608, "callback": 608, "reputation": 608}[base.Type], 0},
			{"enforce", "closed", tag, 503, storeErrorRetryAfter},
			{"enforce", "closed", ActionConfig{Type: "tag", Header: "X-Risk", Value: "high", RetryAfter: 30}, 503, 30},
			{"report", "closed", reject, 0, 0},
		} {
			name := base.Type + "/" + tt.mode + "/" + tt.onError + "/" + tt.action.Type
			t.Run(name, func(t *testing.T) {
				r := base
				r.Name, r.Mode, r.OnStoreError, r.Action = "r", tt.mode, tt.onError, tt.action
				if r.Type == "callback" {
					r.Match.Realm = "inside"
				} else if r.Type != "concurrent" {
					r.Match.Realm = "outside"
				}
				e := compileOn(t, downStore{}, r)
				in := Input{Phase: e.rules[0].phase, Source: netip.MustParseAddr("192.0.2.1"), Realm: r.Match.Realm, Customer: "acme",
					Caller: "14155550100", Callee: "12025550199", CallID: "c1"}
				if in.Realm == "" {
					in.Realm = "inside"
				}
				d := e.Evaluate(context.Background(), in, now)
				if len(d.Hits) != 1 || d.Hits[0].Action != ActionStoreError || d.Hits[0].Rule != "r" || d.Hits[0].Mode != tt.mode ||
					!strings.Contains(d.Hits[0].Entry, "error=store down") {
					t.Fatalf("hits %+v, want one store_error hit naming the error", d.Hits)
				}
				want := cmp.Or(tt.onError, "open")
				if tt.mode == "report" {
					want = tt.onError
				}
				if !strings.Contains(d.Hits[0].Entry, "on_store_error="+want) {
					t.Errorf("entry %q does not say on_store_error=%s", d.Hits[0].Entry, want)
				}
				code := 0
				if d.Reject != nil {
					code = d.Reject.Code
				}
				if code != tt.wantCode {
					t.Fatalf("code %d, want %d (%+v)", code, tt.wantCode, d.Reject)
				}
				wantRetry := tt.wantRetry
				if r.Type == "rate" && tt.action.Type == "reject" {
					wantRetry = 60 // the rate rule's own: its window
				}
				if d.Reject != nil && d.Reject.RetryAfter != wantRetry {
					t.Errorf("Retry-After %d, want %d", d.Reject.RetryAfter, wantRetry)
				}
				if len(d.Tags) != 0 || len(d.Held) != 0 {
					t.Errorf("a failed store tagged or held: %+v", d)
				}
			})
		}
	}
}

// TestStoreFullAtKeyCap runs a rate rule on a real Memory store whose key
// cap (1 per shard) is reached: calls from new callers meet ErrFull, which
// shows in the call record and the metrics and, with on_store_error:
// closed, rejects the call with the rule's 503 and Retry-After.
func TestStoreFullAtKeyCap(t *testing.T) {
	for _, onError := range []string{"open", "closed"} {
		t.Run(onError, func(t *testing.T) {
			st := store.NewMemory(store.WithMaxKeys(1))
			e := compileOn(t, st, RuleConfig{Name: "per-caller", Type: "rate", Key: "caller", Limit: 5, Window: 10 * time.Second,
				Match: MatchConfig{Realm: "outside"}, OnStoreError: onError, Action: ActionConfig{Type: "reject"}})
			h := Handler{Engine: e, Metrics: NewMetrics(prometheus.NewRegistry()), Now: func() time.Time { return now }}
			// 64 shards of one key each: among 65 new callers at least
			// one finds its shard full.
			failed, passed := 0, 0
			for i := range 65 {
				c := &sip.Call{CallID: "c" + itoa(i), Realm: "outside", Orig: "1415555" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i), Dest: "12025550199"}
				err := h.HandleCall(context.Background(), c)
				if len(c.Notes) == 0 {
					if err != nil {
						t.Fatalf("call %d rejected without a note: %v", i, err)
					}
					passed++
					continue
				}
				failed++
				if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "rule=per-caller mode=enforce action=store_error") ||
					!strings.Contains(c.Notes[0], "store: full") || !strings.Contains(c.Notes[0], c.Orig) {
					t.Fatalf("call record notes %q, want the store error with the caller", c.Notes)
				}
				var rej *sip.Rejection
				switch {
				case onError == "open" && err != nil:
					t.Fatalf("fail open rejected the call: %v", err)
				case onError == "closed" && (!errors.As(err, &rej) || rej.Code != 503 || rej.RetryAfter != 10 ||
					!strings.Contains(rej.Cause.Error(), "policy store unavailable") || strings.Contains(rej.Cause.Error(), "full")):
					t.Fatalf("fail closed: %#v, want 503 with Retry-After 10 and no store details", err)
				}
			}
			if failed == 0 || passed == 0 {
				t.Fatalf("%d calls met the full store, %d passed; want some of each", failed, passed)
			}
			if n := testutil.ToFloat64(h.Metrics.storeErrors); n != float64(failed) {
				t.Errorf("stirgate_policy_store_errors_total = %v, want %d", n, failed)
			}
			if n := testutil.ToFloat64(h.Metrics.hits.WithLabelValues("per-caller", "enforce", "store_error")); n != float64(failed) {
				t.Errorf(`stirgate_policy_hits_total{action="store_error"} = %v, want %d`, n, failed)
			}
			if got := st.Stats().Counter.Rejected; got != uint64(failed) {
				t.Errorf("store refused %d keys, engine recorded %d errors", got, failed)
			}
		})
	}
}

// flagsDown is a Memory store whose flags fail.
type flagsDown struct{ *store.Memory }

func (flagsDown) Flags() store.Flags { return downFlags{} }

// TestStoreErrorsOffTheCallPath: failed store operations after the call
// (a lost complaint, one-ring count or mark, a slot not released) are
// counted too.
func TestStoreErrorsOffTheCallPath(t *testing.T) {
	ctx := context.Background()
	m := NewMetrics(prometheus.NewRegistry())
	oneRing := RuleConfig{Name: "wangiri", Type: "one_ring", Callees: 1, Percent: 1, Action: ActionConfig{Type: "reject"}}
	rang := Outcome{Input: Input{Realm: "outside", Caller: "14155550100", Callee: "12025550199"},
		Status: 607, Downstream: true, RingAfter: time.Second, CancelAfter: 2 * time.Second}

	e := compileOn(t, downStore{}, oneRing)
	l := e.CallEnded(ctx, rang, now)
	if l.StoreErrors != 2 { // the complaint and the one-ring count
		t.Errorf("store down: StoreErrors = %d, want 2", l.StoreErrors)
	}
	m.learned(l)
	m.storeFailures(e.Release(ctx, []Slot{{Key: "k", Member: "m"}}))

	// Flags down: the complaint and the count work; reading and setting
	// the mark fail.
	e = compileOn(t, flagsDown{store.NewMemory()}, oneRing)
	l = e.CallEnded(ctx, rang, now)
	if l.StoreErrors != 2 || l.Flagged != "" || l.Complaint == "" {
		t.Errorf("flags down: %+v, want 2 store errors, nothing flagged, the complaint recorded", l)
	}
	m.learned(l)
	if n := testutil.ToFloat64(m.storeErrors); n != 5 {
		t.Fatalf("stirgate_policy_store_errors_total = %v, want 5", n)
	}

	// Through the Handler: counted and logged with the call and the error.
	var log bytes.Buffer
	h := Handler{Engine: compileOn(t, downStore{}, oneRing), Metrics: NewMetrics(prometheus.NewRegistry()),
		Log: slog.New(slog.NewTextHandler(&log, nil)), Now: func() time.Time { return now }}
	h.CallEnded(sip.CallRecord{CallID: "lost@test", Realm: "outside", Orig: "14155550100", Dest: "12025550199",
		Status: 607, Stage: sip.StageDownstream, RingAfter: time.Second, CancelAfter: 2 * time.Second})
	if n := testutil.ToFloat64(h.Metrics.storeErrors); n != 2 {
		t.Errorf("handler: stirgate_policy_store_errors_total = %v, want 2", n)
	}
	if !strings.Contains(log.String(), "policy store error") || !strings.Contains(log.String(), "call_id=lost@test") ||
		!strings.Contains(log.String(), "errors=2") || !strings.Contains(log.String(), `error="store down"`) {
		t.Errorf("log %q, want the lost lesson with call, count and error", log.String())
	}
}

func TestValidateOnStoreError(t *testing.T) {
	tests := []struct {
		name string
		rule RuleConfig
		want string // "" valid
	}{
		{"rate closed", RuleConfig{Type: "rate", Key: "source", Limit: 1, Window: time.Second, OnStoreError: "closed"}, ""},
		{"reputation open", RuleConfig{Type: "reputation", Match: MatchConfig{Realm: "outside"}, OnStoreError: "open"}, ""},
		{"unknown value", RuleConfig{Type: "bombing", OnStoreError: "fail"}, `rules[0].on_store_error: "fail" is not one of open, closed`},
		{"list rule keeps no state", RuleConfig{Type: "list", Lists: []string{"vip"}, OnStoreError: "closed"}, "rules[0].on_store_error: list rules keep no state"},
		{"window rule keeps no state", RuleConfig{Type: "window", OnStoreError: "open"}, "rules[0].on_store_error: window rules keep no state"},
		{"attestation rule keeps no state", RuleConfig{Type: "attestation", MinAttest: "A", OnStoreError: "closed"}, "rules[0].on_store_error: attestation rules keep no state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rule
			r.Name, r.Action = "r", ActionConfig{Type: "reject"}
			f := File{Lists: []ListConfig{{Name: "vip", Numbers: []string{"12025550100"}}}, Rules: []RuleConfig{r}}
			f.ApplyDefaults()
			err := f.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestStoreFailMetric: each store failure a rule's on_store_error decided
// is counted by rule and the mode applied: open (the call went on, and
// always for report mode) or closed (rejected).
func TestStoreFailMetric(t *testing.T) {
	h := Handler{Engine: compileOn(t, downStore{},
		RuleConfig{Name: "watch", Type: "rate", Mode: "report", Key: "caller", Limit: 10, Window: time.Minute, OnStoreError: "closed", Action: ActionConfig{Type: "reject"}},
		RuleConfig{Name: "lenient", Type: "rate", Key: "caller", Limit: 10, Window: time.Minute, Action: ActionConfig{Type: "reject"}},
		RuleConfig{Name: "strict", Type: "one_ring", OnStoreError: "closed", Action: ActionConfig{Type: "reject"}},
	), Metrics: NewMetrics(prometheus.NewRegistry())}
	for i := range 2 {
		c := &sip.Call{CallID: "c" + itoa(i), Realm: "outside", Orig: "14155550100", Dest: "12025550199", Source: netip.MustParseAddrPort("192.0.2.1:5060")}
		if err := h.HandleCall(context.Background(), c); err == nil {
			t.Fatal("on_store_error: closed let the call through")
		}
	}
	for _, tt := range []struct {
		rule, mode string
		want       float64
	}{{"watch", "open", 2}, {"watch", "closed", 0}, {"lenient", "open", 2}, {"lenient", "closed", 0}, {"strict", "closed", 2}, {"strict", "open", 0}} {
		if n := testutil.ToFloat64(h.Metrics.storeFail.WithLabelValues(tt.rule, tt.mode)); n != tt.want {
			t.Errorf("stirgate_policy_store_fail_total{rule=%q,on_store_error=%q} = %v, want %v", tt.rule, tt.mode, n, tt.want)
		}
	}
}
