package policy

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testEngine(t *testing.T, f File) *Engine {
	t.Helper()
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	consent := filepath.Join(dir, "consent.txt")
	if err := os.WriteFile(consent, []byte("12025550143,2026-12-31\n12025550144,2026-01-01\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := Compile([]File{f}, FileLoader(func(p string) string { return filepath.Join(dir, p) }, time.Time{}), store.NewMemory(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func baseFile() File {
	return File{
		Lists: []ListConfig{
			{Name: "vip", Numbers: []string{"12025550100"}},
			{Name: "spam", Numbers: []string{"1900*", "447012345678"}},
			{Name: "dnc", Numbers: []string{"1202555*"}},
			{Name: "consent", File: "consent.txt"},
		},
		Classes: map[string][]string{"telemarketing": {"dialler"}},
		Rules: []RuleConfig{
			{Name: "block-spam", Type: "list", Number: "caller", Lists: []string{"spam"}, Match: MatchConfig{Realm: "outside"}, Action: ActionConfig{Type: "reject", CallInfo: "https://redress.example/"}},
			{Name: "dnc", Type: "dnc", Lists: []string{"dnc"}, Consent: []string{"consent"}, Match: MatchConfig{Realm: "inside", Class: "telemarketing"}, Action: ActionConfig{Type: "reject"}},
			{Name: "label", Type: "list", Number: "caller", Lists: []string{"spam"}, Match: MatchConfig{Realm: "inside"}, Action: ActionConfig{Type: "tag", Header: "X-Spam", Value: "likely"}},
			{Name: "vip", Type: "list", Lists: []string{"vip"}, Action: ActionConfig{Type: "allow"}},
		},
	}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*File)
		in       Input
		wantCode int    // 0 = not rejected
		wantRule string // last hit
		wantTag  string
	}{
		{"no rule matches", nil, Input{Realm: "outside", Caller: "12025550199", Callee: "12025559999"}, 0, "", ""},
		{"spam caller rejected inbound", nil, Input{Realm: "outside", Caller: "19005550100", Callee: "12025559999"}, 608, "block-spam", ""},
		{"spam rule is inbound only", nil, Input{Realm: "inside", Caller: "19005550100", Callee: "14155550100"}, 0, "label", "likely"},
		{"dnc callee from a telemarketer", nil, Input{Realm: "inside", Customer: "dialler", Caller: "14155550100", Callee: "12025550142"}, 603, "dnc", ""},
		{"dnc rule ignores other customers", nil, Input{Realm: "inside", Customer: "pbx", Caller: "14155550100", Callee: "12025550142"}, 0, "", ""},
		{"consent exempts", nil, Input{Realm: "inside", Customer: "dialler", Callee: "12025550143"}, 0, "", ""},
		{"expired consent does not", nil, Input{Realm: "inside", Customer: "dialler", Callee: "12025550144"}, 603, "dnc", ""},
		{"allow beats block wherever it stands", nil, Input{Realm: "inside", Customer: "dialler", Callee: "12025550100"}, 0, "vip", ""},
		{"emergency never blocked", func(f *File) { f.Lists[2].Numbers = []string{"9*"} }, Input{Realm: "inside", Customer: "dialler", Callee: "911"}, 0, "emergency", ""},
		{"report mode records only", func(f *File) { f.Rules[1].Mode = "report" }, Input{Realm: "inside", Customer: "dialler", Callee: "12025550142"}, 0, "dnc", ""},
		{"customers match", func(f *File) { f.Rules[1].Match = MatchConfig{Customers: []string{"other"}} }, Input{Realm: "inside", Customer: "other", Callee: "12025550142"}, 603, "dnc", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := baseFile()
			if tt.mutate != nil {
				tt.mutate(&f)
			}
			d := testEngine(t, f).Evaluate(context.Background(), tt.in, now)
			code := 0
			if d.Reject != nil {
				code = d.Reject.Code
			}
			last := ""
			if len(d.Hits) > 0 {
				last = d.Hits[len(d.Hits)-1].Rule
			}
			if code != tt.wantCode || last != tt.wantRule || d.Tags["X-Spam"] != tt.wantTag {
				t.Fatalf("decision %+v (code %d, last %q), want %d %q tag %q", d, code, last, tt.wantCode, tt.wantRule, tt.wantTag)
			}
		})
	}
}

func TestHandlerRejectsWithReasonAndCallInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := Handler{Engine: testEngine(t, baseFile()), Metrics: NewMetrics(reg), Now: func() time.Time { return now }}
	c := &sip.Call{Realm: "outside", Orig: "19005550100", Dest: "12025559999"}
	err := h.HandleCall(context.Background(), c)
	var rej *sip.Rejection
	if !errors.As(err, &rej) || rej.Code != 608 || rej.Reason != "Rejected" || !strings.Contains(rej.Headers["Call-Info"], "https://redress.example/") {
		t.Fatalf("err = %#v", err)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "rule=block-spam") || !strings.Contains(c.Notes[0], "entry=1900*") {
		t.Fatalf("notes = %q", c.Notes)
	}
	if n := testutil.ToFloat64(h.Metrics.hits.WithLabelValues("block-spam", "enforce", "reject")); n != 1 {
		t.Fatalf("stirgate_policy_hits_total{rule=block-spam} = %v, want 1", n)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	f := baseFile()
	f.Rules[0].Lists = []string{"missing"}
	f.Rules[1].Match.Class = "nobody"
	f.Rules[2].Action = ActionConfig{Type: "tag", Header: "X Bad", Value: "v"}
	f.ApplyDefaults()
	err := f.Validate()
	for _, want := range []string{"rules[0].lists[0]:", "rules[1].match.class:", "rules[2].action.header:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v should name %s", err, want)
		}
	}
}

// allowPathEngine has 100 rules (99 caller lists and a DNC rule over a
// 1,000,000-number list) that a call from 14155550100 to 12029999999 passes.
func allowPathEngine(b *testing.B) *Engine {
	dir := b.TempDir()
	var sb strings.Builder
	for i := 0; i < 1_000_000; i++ {
		sb.WriteString("1")
		sb.WriteString(strings.Repeat("0", 10-len(itoa(i))))
		sb.WriteString(itoa(i))
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "dnc.txt"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	f := File{Lists: []ListConfig{{Name: "dnc", File: "dnc.txt"}, {Name: "spam", Numbers: []string{"1900*"}}}}
	for i := 0; i < 99; i++ {
		f.Rules = append(f.Rules, RuleConfig{Name: "spam" + itoa(i), Type: "list", Number: "caller", Lists: []string{"spam"}, Action: ActionConfig{Type: "reject"}})
	}
	f.Rules = append(f.Rules, RuleConfig{Name: "dnc", Type: "dnc", Lists: []string{"dnc"}, Action: ActionConfig{Type: "reject"}})
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		b.Fatal(err)
	}
	e, err := Compile([]File{f}, FileLoader(func(p string) string { return filepath.Join(dir, p) }, time.Time{}), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkEvaluateAllowPath is the engine on a call no rule stops, with
// 100 rules and a 1,000,000-number DNC list:
//
//	go test ./policy -run '^$' -bench AllowPath -benchmem
func BenchmarkEvaluateAllowPath(b *testing.B) {
	e := allowPathEngine(b)
	in := Input{Realm: "inside", Caller: "14155550100", Callee: "12029999999"}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Evaluate(context.Background(), in, now); d.Reject != nil {
			b.Fatal("rejected")
		}
	}
}

// BenchmarkHandlerAllowPath is the whole policy stage as the pipeline runs
// it (sip.Call in, engine, outputs), same rules and list.
func BenchmarkHandlerAllowPath(b *testing.B) {
	h := Handler{Engine: allowPathEngine(b), Now: func() time.Time { return now }}
	c := &sip.Call{CallID: "bench@test", Realm: "inside", Orig: "14155550100", Dest: "12029999999", Source: netip.MustParseAddrPort("192.0.2.1:5060")}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.HandleCall(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMillionCallers sends calls from 1,000,000 distinct callers to
// 1,000 callees through the stateful rules (rate per caller, bombing,
// victim protection) on one in-memory store and reports the Go heap it
// holds afterwards (MiB, after GC): the memory bound to report.
//
//	go test ./policy -run '^$' -bench MillionCallers -benchtime 1x
func BenchmarkMillionCallers(b *testing.B) {
	callers := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("STIRGATE_BENCH_CALLERS")); err == nil && v > 0 {
		callers = v // e.g. 100000: the per-call cost below the store's key cap
	}
	f := File{Rules: []RuleConfig{
		{Name: "per-caller", Type: "rate", Key: "caller", Limit: 30, Window: time.Minute, Match: MatchConfig{Realm: "outside"}, Action: ActionConfig{Type: "reject"}},
		{Name: "bombing", Type: "bombing", Match: MatchConfig{Realm: "outside"}, Action: ActionConfig{Type: "reject"}},
		{Name: "protect", Type: "protect", Distinct: 1000, Action: ActionConfig{Type: "reject"}},
	}}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		st := store.NewMemory()
		e, err := Compile([]File{f}, nil, st, nil)
		if err != nil {
			b.Fatal(err)
		}
		at := now
		for i := 0; i < callers; i++ {
			in := Input{Realm: "outside", Caller: "1415" + strings.Repeat("0", 7-len(itoa(i))) + itoa(i), Callee: "1202555" + strings.Repeat("0", 4-len(itoa(i%1000))) + itoa(i%1000)}
			for _, phase := range []Phase{PhaseEarly, PhaseVerified} {
				in.Phase = phase
				e.Evaluate(ctx, in, at)
			}
			at = at.Add(time.Millisecond) // 1,000 calls/s: 1M callers in 17 minutes
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		stats := st.Stats()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(callers), "ns/call")
		b.ReportMetric(float64(stats.Counter.Rejected), "keys-refused")
		b.ReportMetric(float64(stats.Counter.Keys), "counter-keys")
		b.ReportMetric(float64(stats.Distinct.Keys), "distinct-keys")
		runtime.KeepAlive(e)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for ; i > 0; i /= 10 {
		n--
		b[n] = byte('0' + i%10)
	}
	return string(b[n:])
}

func TestRateRule(t *testing.T) {
	f := baseFile()
	f.Rules = append(f.Rules, RuleConfig{Name: "flood", Type: "rate", Key: "source", Limit: 3, Window: 10 * time.Second, Action: ActionConfig{Type: "reject"}})
	e := testEngine(t, f)
	call := func(src string, at time.Time) Decision {
		return e.Evaluate(context.Background(), Input{Source: netip.MustParseAddr(src), Realm: "outside", Caller: "14155550100", Callee: "12025559999"}, at)
	}
	for i := 0; i < 3; i++ {
		if d := call("192.0.2.1", now); d.Reject != nil {
			t.Fatalf("call %d rejected under the limit", i+1)
		}
	}
	d := call("192.0.2.1", now)
	if d.Reject == nil || d.Reject.Code != 503 || d.Reject.RetryAfter != 10 {
		t.Fatalf("4th call in the window: %+v, want 503 with Retry-After 10", d)
	}
	if !strings.Contains(d.Hits[len(d.Hits)-1].Entry, "count=4 limit=3") {
		t.Errorf("hit does not record the count: %+v", d.Hits)
	}
	if d := call("192.0.2.2", now); d.Reject != nil {
		t.Fatal("another source was limited too")
	}
	if d := call("192.0.2.1", now.Add(11*time.Second)); d.Reject != nil {
		t.Fatal("still limited after the window")
	}
}

func TestBombingRule(t *testing.T) {
	f := baseFile()
	f.Rules = append(f.Rules, RuleConfig{Name: "bombing", Type: "bombing", Match: MatchConfig{Realm: "outside"}, Action: ActionConfig{Type: "reject"}})
	e := testEngine(t, f)
	call := func(caller, callee string, at time.Time) Decision {
		return e.Evaluate(context.Background(), Input{Source: netip.MustParseAddr("192.0.2.1"), Realm: "outside", Caller: caller, Callee: callee}, at)
	}
	at := now
	for i := 0; i < 5; i++ {
		if d := call("14155550100", "12025559999", at); d.Reject != nil {
			t.Fatalf("call %d rejected under 5 in 15m", i+1)
		}
		at = at.Add(time.Minute)
	}
	d := call("14155550100", "12025559999", at)
	if d.Reject == nil || d.Reject.Code != 486 {
		t.Fatalf("6th call in 15 minutes: %+v, want 486", d)
	}
	if d := call("14155550100", "12025558888", at); d.Reject != nil {
		t.Fatal("another callee of the same caller was blocked")
	}
	if d := call("14155550101", "12025559999", at); d.Reject != nil {
		t.Fatal("another caller of the same callee was blocked")
	}
	// After 15 minutes the first threshold is clear; the hourly one (9) is not reached yet.
	if d := call("14155550100", "12025559999", at.Add(16*time.Minute)); d.Reject != nil {
		t.Fatalf("7th call after the 15m window: %+v", d)
	}
}

func TestHygieneRule(t *testing.T) {
	f := baseFile()
	f.Lists = append(f.Lists, ListConfig{Name: "ours", Numbers: []string{"1202555*"}})
	f.Rules = append(f.Rules, RuleConfig{Name: "hygiene", Type: "hygiene", Match: MatchConfig{Realm: "outside"},
		Checks: []string{"anonymous", "same_number", "invalid", "own_number"}, Lists: []string{"ours"}, Action: ActionConfig{Type: "reject"}})
	e := testEngine(t, f)
	tests := []struct {
		name, caller, callee, wantCheck string
	}{
		{"valid caller", "14155552671", "12025559999", ""},
		{"anonymous", "", "12025559999", "anonymous"},
		{"caller is the callee", "14155552671", "14155552671", "same_number"},
		{"not a valid number", "19995550100", "12025559999", "invalid"},
		{"our own number from the trunk", "12025550111", "14155552671", "own_number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Evaluate(context.Background(), Input{Realm: "outside", Caller: tt.caller, Callee: tt.callee}, now)
			got := ""
			if d.Reject != nil {
				got = d.Hits[len(d.Hits)-1].Matched
			}
			if got != tt.wantCheck {
				t.Fatalf("check = %q (%+v), want %q", got, d, tt.wantCheck)
			}
			if got != "" && d.Reject.Code != 608 {
				t.Fatalf("code %d, want 608", d.Reject.Code)
			}
		})
	}
}

// BenchmarkEvaluateStatefulPath is a call that passes one rule of every
// type that reads or writes the store or the clock (both phases), on the
// in-memory store: the per-call cost of the stateful rules.
//
//	go test ./policy -run '^$' -bench StatefulPath -benchmem
func BenchmarkEvaluateStatefulPath(b *testing.B) {
	f := File{Rules: []RuleConfig{
		{Name: "per-source", Type: "rate", Key: "source", Limit: 1 << 30, Window: time.Minute, Action: ActionConfig{Type: "reject"}},
		{Name: "bombing", Type: "bombing", Thresholds: []Threshold{{1 << 30, time.Hour}}, Action: ActionConfig{Type: "reject"}},
		{Name: "hygiene", Type: "hygiene", Checks: []string{"anonymous", "same_number"}, Action: ActionConfig{Type: "reject"}},
		{Name: "wangiri", Type: "one_ring", Action: ActionConfig{Type: "reject"}},
		{Name: "protect", Type: "protect", Distinct: 1000, Action: ActionConfig{Type: "reject"}},
		{Name: "reputation", Type: "reputation", Action: ActionConfig{Type: "reject"}},
		{Name: "attest", Type: "attestation", MinAttest: "C", Action: ActionConfig{Type: "tag", Header: "X-A", Value: "low"}},
	}}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		b.Fatal(err)
	}
	e, err := Compile([]File{f}, nil, store.NewMemory(), nil)
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Source: netip.MustParseAddr("192.0.2.1"), Realm: "outside", Caller: "14155550100", Callee: "12025550199", Verified: true, Attest: "A"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, phase := range []Phase{PhaseEarly, PhaseVerified} {
			in.Phase = phase
			if d := e.Evaluate(ctx, in, now); d.Reject != nil || len(d.Hits) != 0 {
				b.Fatalf("phase %d: %+v", phase, d)
			}
		}
	}
}
