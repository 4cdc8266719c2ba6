package policy

import (
	"context"
	"testing"
	"time"

	"github.com/stirgate/stirgate/policy/store"
)

// TestManagedList: a rule refers to a managed list by name; its contents
// change with Set, without recompiling, and entries expire.
func TestManagedList(t *testing.T) {
	f := File{
		Lists: []ListConfig{{Name: "dnc-api", Managed: true}},
		Rules: []RuleConfig{{Name: "dnc-api", Type: "list", Lists: []string{"dnc-api"}, Action: ActionConfig{Type: "reject", Code: 603}}},
	}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	managed := &ManagedLists{}
	e, err := Compile([]File{f}, nil, store.NewMemory(), managed)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ManagedListNames(); len(got) != 1 || got[0] != "dnc-api" {
		t.Fatalf("managed lists %v", got)
	}
	call := Input{Realm: "inside", Caller: "14155550100", Callee: "12025550142"}
	rejected := func(at time.Time) bool {
		d := e.Evaluate(context.Background(), call, at)
		return d.Reject != nil && d.Reject.Code == 603
	}
	if rejected(now) {
		t.Fatal("rejected before the list has entries")
	}
	if err := managed.Set([]ManagedEntry{{List: "dnc-api", Number: "12025550142", Expires: now.Add(time.Hour)}, {List: "other", Number: "1"}}); err != nil {
		t.Fatal(err)
	}
	if !rejected(now) {
		t.Fatal("not rejected once the number is on the managed list")
	}
	if rejected(now.Add(2 * time.Hour)) {
		t.Error("still rejected after the entry expired")
	}
	if err := managed.Set(nil); err != nil || rejected(now) {
		t.Errorf("rejected after the entry was removed (%v)", err)
	}
}

// TestManagedListValidation: a managed list has no file or numbers.
func TestManagedListValidation(t *testing.T) {
	f := File{Lists: []ListConfig{{Name: "x", Managed: true, Numbers: []string{"1"}}}}
	f.ApplyDefaults()
	if err := f.Validate(); err == nil {
		t.Fatal("a managed list with numbers validated")
	}
}

// TestAdminComplaintsAndFlags: an operator's complaint counts for the
// reputation rule like a 607; flags can be read and cleared.
func TestAdminComplaintsAndFlags(t *testing.T) {
	f := File{Rules: []RuleConfig{
		{Name: "bad-reputation", Type: "reputation", Limit: 2, Window: time.Hour, Action: ActionConfig{Type: "reject"}},
		{Name: "shield", Type: "protect", Limit: 5, Window: time.Minute, FlagFor: time.Hour, Action: ActionConfig{Type: "reject"}},
	}}
	e := testEngine(t, f)
	ctx := context.Background()
	caller := "12025550199"
	call := Input{Phase: PhaseVerified, Realm: "outside", Caller: caller, Callee: "12025550100", Verified: true, Attest: "A"}
	for i := 1; i <= 2; i++ {
		n, err := e.Complain(ctx, caller, now)
		if err != nil || n != i {
			t.Fatalf("complaint %d: count %d (%v)", i, n, err)
		}
	}
	if d := e.Evaluate(ctx, call, now); d.Reject == nil || d.Hits[len(d.Hits)-1].Rule != "bad-reputation" {
		t.Fatalf("two complaints with limit 2 did not reject: %+v", d)
	}
	st, err := e.Inspect(ctx, caller, now)
	if err != nil || st.Complaints != 2 || st.Window != time.Hour {
		t.Fatalf("inspect: %+v %v", st, err)
	}
	if err := e.store.Flags().Set(ctx, keyOneRing+caller, time.Hour, now); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Flags().Set(ctx, protectKey("shield", caller), time.Hour, now); err != nil {
		t.Fatal(err)
	}
	st, _ = e.Inspect(ctx, caller, now)
	if !st.OneRing.Equal(now.Add(time.Hour)) || !st.Protect["shield"].Equal(now.Add(time.Hour)) {
		t.Fatalf("flags not seen: %+v", st)
	}
	for _, flag := range []string{FlagOneRing, FlagProtect} {
		if err := e.ClearFlag(ctx, caller, flag, now); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ = e.Inspect(ctx, caller, now); !st.OneRing.IsZero() || len(st.Protect) != 0 {
		t.Errorf("flags after clearing: %+v", st)
	}
	if err := e.ClearFlag(ctx, caller, "nonsense", now); err == nil {
		t.Error("an unknown flag was cleared")
	}
}
