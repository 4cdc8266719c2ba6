package policy

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// ruleEngine compiles a file with the given rules (and the lists of
// baseFile) on a fresh in-memory store.
func ruleEngine(t *testing.T, rules ...RuleConfig) *Engine {
	t.Helper()
	f := baseFile()
	f.Rules = rules
	return testEngine(t, f)
}

func TestWindowRule(t *testing.T) {
	ny := "12125550100" // America/New_York: UTC-5 in November
	tests := []struct {
		name   string
		rule   RuleConfig
		callee string
		at     time.Time
		reject bool
	}{
		{"07:00 in New York is before 08:00", RuleConfig{}, ny, time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), true},
		{"09:00 in New York is inside", RuleConfig{}, ny, time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC), false},
		{"the callee's zone, not ours: 06:00 in Los Angeles", RuleConfig{}, "14155550100", time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC), true},
		{"21:00 is the end (exclusive)", RuleConfig{}, ny, time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC), true},
		{"20:59 is inside", RuleConfig{}, ny, time.Date(2026, 11, 28, 1, 59, 0, 0, time.UTC), false},
		{"Saturday is not a weekday", RuleConfig{Days: []string{"mon", "tue", "wed", "thu", "fri"}}, ny, time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC), true},
		{"a holiday in the callee's calendar", RuleConfig{Holidays: []string{"2026-11-26"}}, ny, time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC), true},
		{"the holiday is over in New York, not yet in UTC", RuleConfig{Holidays: []string{"2026-11-26"}}, ny, time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC), true}, // 23:00 on the 26th: holiday and late
		{"over midnight: 23:00 inside 22:00-06:00", RuleConfig{Hours: "22:00-06:00"}, ny, time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC), false},
		{"over midnight: 12:00 outside 22:00-06:00", RuleConfig{Hours: "22:00-06:00"}, ny, time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC), true},
		{"toll-free spans 43 zones: the rule's timezone", RuleConfig{TimeZone: "America/Chicago"}, "18005550100", time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC), false},
		{"Shanghai at 22:00", RuleConfig{}, "8613800138000", time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC), true},
		{"Shanghai at 10:00", RuleConfig{}, "8613800138000", time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rule
			r.Name, r.Type, r.Match, r.Action = "hours", "window", MatchConfig{Realm: "inside", Class: "telemarketing"}, ActionConfig{Type: "reject"}
			e := ruleEngine(t, r)
			d := e.Evaluate(context.Background(), Input{Realm: "inside", Customer: "dialler", Caller: "14155550100", Callee: tt.callee}, tt.at)
			if (d.Reject != nil) != tt.reject {
				t.Fatalf("rejected = %v (%+v), want %v", d.Reject != nil, d.Hits, tt.reject)
			}
			if tt.reject && d.Reject.Code != 603 {
				t.Fatalf("code %d, want 603", d.Reject.Code)
			}
			// Other customers are not telemarketers: never limited.
			if d := e.Evaluate(context.Background(), Input{Realm: "inside", Customer: "pbx", Callee: tt.callee}, tt.at); d.Reject != nil {
				t.Fatalf("a customer outside the class was limited: %+v", d.Hits)
			}
		})
	}
}

func TestProtectRule(t *testing.T) {
	e := ruleEngine(t, RuleConfig{Name: "protect", Type: "protect", Distinct: 3, Window: 10 * time.Minute, FlagFor: 30 * time.Minute,
		Lists: []string{"vip"}, Action: ActionConfig{Type: "reject"}})
	victim := "12025559999"
	call := func(caller string, at time.Time, verified bool, attest string) Decision {
		return e.Evaluate(context.Background(), Input{Phase: PhaseVerified, Realm: "outside", Caller: caller, Callee: victim, Verified: verified, Attest: attest}, at)
	}
	for i, c := range []string{"14155550101", "14155550102", "14155550103", "14155550101"} {
		if d := call(c, now, false, ""); d.Reject != nil {
			t.Fatalf("call %d: 3 distinct callers may call: %+v", i+1, d.Hits)
		}
	}
	d := call("14155550104", now, false, "")
	if d.Reject == nil || d.Reject.Code != 486 || !strings.Contains(d.Hits[0].Entry, "callers=4 limit=3") {
		t.Fatalf("4th distinct caller: %+v, want 486 with the count", d)
	}
	if d := call("14155550101", now.Add(time.Minute), false, ""); d.Reject == nil {
		t.Fatal("protect mode let an earlier caller through")
	}
	if d := call("14155550199", now.Add(time.Minute), true, "A"); d.Reject != nil {
		t.Fatalf("a verified A call was stopped: %+v", d.Hits)
	}
	if d := call("14155550199", now.Add(time.Minute), true, "B"); d.Reject == nil {
		t.Fatal("a B-attested call passed protect mode (min_attest A)")
	}
	if d := call("12025550100", now.Add(time.Minute), false, ""); d.Reject != nil {
		t.Fatalf("an allow-listed caller was stopped: %+v", d.Hits)
	}
	if d := e.Evaluate(context.Background(), Input{Phase: PhaseVerified, Realm: "outside", Caller: "14155550101", Callee: "12025558888"}, now); d.Reject != nil {
		t.Fatal("another callee is protected too")
	}
	if d := e.Evaluate(context.Background(), Input{Phase: PhaseEarly, Realm: "outside", Caller: "14155550101", Callee: victim}, now); len(d.Hits) != 0 {
		t.Fatal("a protect rule ran before verification")
	}
	// Protect mode ends after flag_for; by then the callers' window is over.
	if d := call("14155550105", now.Add(31*time.Minute), false, ""); d.Reject != nil {
		t.Fatalf("still protected after flag_for: %+v", d.Hits)
	}
}

// ringCall is an inbound call from caller to callee that rang after 1 s and
// was cancelled after cancel (0: answered).
func ringCall(caller, callee string, cancel time.Duration) Outcome {
	o := Outcome{Input: Input{Source: netip.MustParseAddr("192.0.2.1"), Realm: "outside", Caller: caller, Callee: callee}, RingAfter: time.Second, Downstream: true}
	if cancel > 0 {
		o.Status, o.CancelAfter = 487, cancel
	} else {
		o.Status = 200
	}
	return o
}

func TestOneRingRule(t *testing.T) {
	oneRing := RuleConfig{Name: "wangiri", Type: "one_ring", Callees: 3, Percent: 80, Window: time.Hour, RingMax: 3 * time.Second, FlagFor: 24 * time.Hour, Action: ActionConfig{Type: "reject"}}
	shield := RuleConfig{Name: "shield", Type: "callback", Action: ActionConfig{Type: "tag", Header: "X-Callback-Risk", Value: "one-ring"}}
	ctx := context.Background()
	caller := "447012345678"
	inbound := func(e *Engine, at time.Time) Decision {
		return e.Evaluate(ctx, Input{Realm: "outside", Caller: caller, Callee: "12025550999"}, at)
	}

	t.Run("flagged after 3 callees, then rejected and shielded", func(t *testing.T) {
		e := ruleEngine(t, oneRing, shield)
		for i, callee := range []string{"12025550001", "12025550002"} {
			if l := e.CallEnded(ctx, ringCall(caller, callee, 2*time.Second), now); l.Flagged != "" {
				t.Fatalf("flagged after %d callees", i+1)
			}
		}
		if d := inbound(e, now); d.Reject != nil {
			t.Fatal("rejected before being flagged")
		}
		l := e.CallEnded(ctx, ringCall(caller, "12025550003", 2*time.Second), now)
		if l.Flagged != caller || l.FlagRule != "wangiri" {
			t.Fatalf("third one-ring callee: %+v, want flagged", l)
		}
		d := inbound(e, now.Add(time.Minute))
		if d.Reject == nil || d.Reject.Code != 608 {
			t.Fatalf("call from a flagged caller: %+v, want 608", d)
		}
		out := e.Evaluate(ctx, Input{Realm: "inside", Caller: "12025550001", Callee: caller}, now.Add(time.Minute))
		if out.Tags["X-Callback-Risk"] != "one-ring" {
			t.Fatalf("callback to the flagged number not tagged: %+v", out)
		}
		if d := inbound(e, now.Add(25*time.Hour)); d.Reject != nil {
			t.Fatal("still flagged after flag_for")
		}
	})
	t.Run("answered calls keep the share under percent", func(t *testing.T) {
		e := ruleEngine(t, oneRing)
		for i := range 3 {
			e.CallEnded(ctx, ringCall(caller, "1202555010"+itoa(i), 0), now)
		}
		for i := range 3 {
			if l := e.CallEnded(ctx, ringCall(caller, "1202555000"+itoa(i), 2*time.Second), now); l.Flagged != "" {
				t.Fatalf("flagged with 3 of 6 callees one-rung (50%% < 80%%): %+v", l)
			}
		}
	})
	t.Run("cancelled later than ring_max is a normal call", func(t *testing.T) {
		e := ruleEngine(t, oneRing)
		for i := range 5 {
			if l := e.CallEnded(ctx, ringCall(caller, "1202555000"+itoa(i), 10*time.Second), now); l.Flagged != "" {
				t.Fatal("flagged for calls that rang 9 s")
			}
		}
	})
	t.Run("report mode flags nothing", func(t *testing.T) {
		r := oneRing
		r.Mode = "report"
		e := ruleEngine(t, r)
		var l Learned
		for i := range 3 {
			l = e.CallEnded(ctx, ringCall(caller, "1202555000"+itoa(i), 2*time.Second), now)
		}
		if l.Flagged != caller || !strings.HasPrefix(l.FlagEntry, "report only") {
			t.Fatalf("report mode did not report: %+v", l)
		}
		if d := inbound(e, now); len(d.Hits) != 0 {
			t.Fatalf("report mode changed decisions: %+v", d.Hits)
		}
	})
}

func TestAttestationRule(t *testing.T) {
	e := ruleEngine(t, RuleConfig{Name: "trunk-b", Type: "attestation", MinAttest: "B", Match: MatchConfig{Sources: []string{"192.0.2.0/24"}}, Action: ActionConfig{Type: "reject"}})
	tests := []struct {
		name     string
		source   string
		verified bool
		attest   string
		reject   bool
	}{
		{"unsigned from the trunk", "192.0.2.10", false, "", true},
		{"C-attested from the trunk", "192.0.2.10", true, "C", true},
		{"B-attested from the trunk", "192.0.2.10", true, "B", false},
		{"A-attested from the trunk", "192.0.2.10", true, "A", false},
		{"failed verification claiming A", "192.0.2.10", false, "A", true},
		{"unsigned from another trunk", "198.51.100.7", false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Evaluate(context.Background(), Input{Phase: PhaseVerified, Source: netip.MustParseAddr(tt.source), Realm: "outside", Caller: "14155550100", Callee: "12025559999", Verified: tt.verified, Attest: tt.attest}, now)
			if (d.Reject != nil) != tt.reject {
				t.Fatalf("rejected = %v (%+v), want %v", d.Reject != nil, d.Hits, tt.reject)
			}
		})
	}
}

func TestReputationRule(t *testing.T) {
	ctx := context.Background()
	byCaller := RuleConfig{Name: "reputation", Type: "reputation", Limit: 2, Window: 24 * time.Hour, Action: ActionConfig{Type: "reject", CallInfo: "https://redress.example/"}}
	byTrunk := RuleConfig{Name: "trunk-reputation", Type: "reputation", Subject: "source", Limit: 2, Window: 24 * time.Hour, Action: ActionConfig{Type: "tag", Header: "X-Spam", Value: "trunk"}}
	e := ruleEngine(t, byCaller, byTrunk)
	caller := "14155550100"
	src := netip.MustParseAddr("192.0.2.1")
	complaint := func(verified bool, downstream bool) Learned {
		return e.CallEnded(ctx, Outcome{Input: Input{Source: src, Realm: "outside", Caller: caller, Callee: "12025559999", Verified: verified, Attest: "A"}, Status: 607, Downstream: downstream}, now)
	}
	next := func() Decision {
		return e.Evaluate(ctx, Input{Phase: PhaseVerified, Source: src, Realm: "outside", Caller: caller, Callee: "12025558888", Verified: true, Attest: "A"}, now.Add(time.Minute))
	}
	if l := complaint(true, false); l.Complaint != "" {
		t.Fatalf("a 607 stirgate sent itself was recorded: %+v", l)
	}
	if l := complaint(false, true); l.Complaint != "trunk:192.0.2.1" {
		t.Fatalf("unverified call's complaint against %q, want the trunk", l.Complaint)
	}
	if l := complaint(true, true); l.Complaint != caller {
		t.Fatalf("A-verified call's complaint against %q, want the caller", l.Complaint)
	}
	if d := next(); d.Reject != nil {
		t.Fatalf("rejected after 1 complaint (limit 2): %+v", d.Hits)
	}
	complaint(false, true)
	complaint(true, true)
	d := next()
	if d.Reject == nil || d.Reject.Code != 608 || d.Reject.CallInfo == "" {
		t.Fatalf("after 2 complaints: %+v, want 608 with Call-Info", d)
	}
	if d.Hits[0].Rule != "reputation" || !strings.Contains(d.Hits[0].Entry, "count=2") {
		t.Fatalf("hit: %+v", d.Hits)
	}
	other := e.Evaluate(ctx, Input{Phase: PhaseVerified, Source: src, Realm: "outside", Caller: "14155550111", Callee: "12025558888", Verified: true, Attest: "A"}, now)
	if other.Reject != nil || other.Tags["X-Spam"] != "trunk" {
		t.Fatalf("another caller on the complained-about trunk: %+v, want tagged only", other)
	}
	if d := e.Evaluate(ctx, Input{Phase: PhaseVerified, Source: src, Realm: "outside", Caller: caller, Callee: "1", Verified: true, Attest: "A"}, now.Add(25*time.Hour)); d.Reject != nil {
		t.Fatal("complaints still count after the window")
	}
}

func TestValidateStatefulRules(t *testing.T) {
	tests := []struct {
		name string
		rule RuleConfig
		want string
	}{
		{"bad hours", RuleConfig{Type: "window", Hours: "8-21"}, "rules[0].hours:"},
		{"bad day", RuleConfig{Type: "window", Days: []string{"monday"}}, "rules[0].days[0]:"},
		{"bad holiday", RuleConfig{Type: "window", Holidays: []string{"25/12/2026"}}, "rules[0].holidays[0]:"},
		{"bad zone", RuleConfig{Type: "window", TimeZone: "Mars/Olympus"}, "rules[0].timezone:"},
		{"protect on the inside", RuleConfig{Type: "protect", Match: MatchConfig{Realm: "inside"}}, "rules[0].match.realm:"},
		{"callback on the outside", RuleConfig{Type: "callback", Match: MatchConfig{Realm: "outside"}}, "rules[0].match.realm:"},
		{"percent over 100", RuleConfig{Type: "one_ring", Percent: 120}, "rules[0].percent:"},
		{"ring_max too long", RuleConfig{Type: "one_ring", RingMax: time.Hour}, "rules[0].ring_max:"},
		{"min_attest D", RuleConfig{Type: "attestation", MinAttest: "D"}, "rules[0].min_attest:"},
		{"bad source", RuleConfig{Type: "attestation", MinAttest: "A", Match: MatchConfig{Sources: []string{"trunk-1"}}}, "rules[0].match.sources[0]:"},
		{"reputation subject", RuleConfig{Type: "reputation", Subject: "callee"}, "rules[0].subject:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rule
			r.Name, r.Action = "r", ActionConfig{Type: "reject"}
			f := File{Rules: []RuleConfig{r}}
			f.ApplyDefaults()
			err := f.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestConcurrentRule(t *testing.T) {
	ctx := context.Background()
	e := ruleEngine(t, RuleConfig{Name: "trunk-capacity", Type: "concurrent", Key: "customer", Limit: 2, Match: MatchConfig{Realm: "inside"}, Action: ActionConfig{Type: "reject"}})
	call := func(id, customer string) Decision {
		return e.Evaluate(ctx, Input{Realm: "inside", Customer: customer, CallID: id, Caller: "14155550100", Callee: "12025559999"}, now)
	}
	d1, d2 := call("c1", "acme"), call("c2", "acme")
	if d1.Reject != nil || d2.Reject != nil || len(d1.Held) != 1 || len(d2.Held) != 1 {
		t.Fatalf("two calls within the limit: %+v %+v", d1, d2)
	}
	// The rejected call holds the slot it took until it ends (the handler
	// releases Held when the call ends, a rejected one at once).
	d3 := call("c3", "acme")
	if d3.Reject == nil || d3.Reject.Code != 503 || len(d3.Held) != 1 || !strings.Contains(d3.Hits[0].Entry, "calls=3 limit=2") {
		t.Fatalf("third concurrent call: %+v, want 503 holding its slot", d3)
	}
	if failed := e.Release(ctx, d3.Held); failed != 0 {
		t.Fatalf("%d releases failed", failed)
	}
	if d := call("c4", "other"); d.Reject != nil {
		t.Fatal("another customer was limited")
	}
	if failed := e.Release(ctx, d1.Held); failed != 0 {
		t.Fatalf("%d releases failed", failed)
	}
	if d := call("c5", "acme"); d.Reject != nil {
		t.Fatalf("a freed slot was not reused: %+v", d.Hits)
	}
	if d := call("c6", "acme"); d.Reject == nil {
		t.Fatal("a third call in progress was let through")
	}
}

func TestStagesAndLearningAreSkippedWhenIdle(t *testing.T) {
	list := baseFile().Rules[0]
	reputation := RuleConfig{Name: "reputation", Type: "reputation", Action: ActionConfig{Type: "reject"}}
	oneRing := RuleConfig{Name: "wangiri", Type: "one_ring", Action: ActionConfig{Type: "reject"}}
	rang := ringCall("447012345678", "12025550001", 2*time.Second)
	unwanted := Outcome{Input: Input{Realm: "outside", Caller: "14155550100"}, Status: 607, Downstream: true}
	tests := []struct {
		name                     string
		rules                    []RuleConfig
		verifiedStage, learnRing bool
	}{
		{"list rules only", []RuleConfig{list}, false, false},
		{"a reputation rule", []RuleConfig{list, reputation}, true, false},
		{"a one_ring rule", []RuleConfig{oneRing}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ruleEngine(t, tt.rules...)
			if got := e.HasRules(PhaseVerified); got != tt.verifiedStage {
				t.Errorf("HasRules(PhaseVerified) = %v, want %v", got, tt.verifiedStage)
			}
			if got := e.Learns(rang); got != tt.learnRing {
				t.Errorf("Learns(a rung call) = %v, want %v", got, tt.learnRing)
			}
			if !e.Learns(unwanted) {
				t.Error("a 607 from the callee is always a complaint to record")
			}
		})
	}
}

func TestValidateEmergencyNumbers(t *testing.T) {
	for _, tt := range []struct {
		number string
		ok     bool
	}{{"112", true}, {"911", true}, {"+112", false}, {"11 2", false}, {"", false}, {"1234567890123456", false}} {
		f := File{Emergency: []string{tt.number}}
		f.ApplyDefaults()
		if err := f.Validate(); (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "emergency[0]")) {
			t.Errorf("emergency %q: error %v, want ok=%v", tt.number, err, tt.ok)
		}
	}
}
