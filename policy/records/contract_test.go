package records

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// testContract is what every Store must do; each backend's test runs it
// on a fresh, empty database from open.
func testContract(t *testing.T, open func(t testing.TB) Store) {
	ctx := context.Background()
	t.Run("search", func(t *testing.T) {
		s := open(t)
		var recs []Record
		for i := range 30 {
			recs = append(recs, sample(i))
		}
		recs[5].Realm, recs[5].Stage, recs[5].Rule, recs[5].Status = "inside", "policy", "dnc", 603
		if err := s.Write(ctx, recs, nil); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			q    Query
			want []string // Call-IDs, newest first
		}{
			{"window and dest", Query{From: t0.Add(3 * time.Second), To: t0.Add(9 * time.Second), Dest: "12025550000"}, []string{"call-6@test", "call-3@test"}},
			{"origid", Query{OrigID: "origid-17"}, []string{"call-17@test"}},
			{"call-id", Query{CallID: "call-29@test"}, []string{"call-29@test"}},
			{"limit", Query{Orig: "12025550199", Limit: 2}, []string{"call-29@test", "call-28@test"}},
			{"number is orig or dest", Query{Number: "12025550002", To: t0.Add(9 * time.Second)}, []string{"call-8@test", "call-5@test", "call-2@test"}},
			{"rejected", Query{Decision: "rejected"}, []string{"call-5@test"}},
			{"rule", Query{Rule: "dnc"}, []string{"call-5@test"}},
			{"status", Query{Status: 603}, []string{"call-5@test"}},
			{"realm", Query{Realm: "inside"}, []string{"call-5@test"}},
			{"forwarded", Query{Decision: "forwarded", From: t0.Add(4 * time.Second), To: t0.Add(7 * time.Second)}, []string{"call-6@test", "call-4@test"}},
			{"nothing", Query{Orig: "19995550000"}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := Search(ctx, s, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range got {
					ids = append(ids, r.CallID)
				}
				if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
					t.Fatalf("got %v, want %v", ids, tc.want)
				}
			})
		}
		got, err := Search(ctx, s, Query{CallID: "call-4@test"})
		if err != nil || len(got) != 1 {
			t.Fatalf("search: %v %v", got, err)
		}
		if want := sample(4); got[0] != want {
			t.Errorf("stored and read back:\n got %+v\nwant %+v", got[0], want)
		}
	})

	t.Run("end sets the duration", func(t *testing.T) {
		s := open(t)
		a, b := sample(1), sample(2)
		a.Duration, b.Duration = 0, 0
		// The end of a comes in the batch of its record, b's in a later one.
		if err := s.Write(ctx, []Record{a, b}, []End{{CallID: a.CallID, At: a.At, Duration: 42 * time.Second}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, nil, []End{{CallID: b.CallID, At: b.At, Duration: 7 * time.Second}, {CallID: "unknown", At: t0}}); err != nil {
			t.Fatal(err)
		}
		got, err := Search(ctx, s, Query{})
		if err != nil || len(got) != 2 || got[0].Duration != 7*time.Second || got[1].Duration != 42*time.Second {
			t.Fatalf("durations after the ends: %+v %v", got, err)
		}
	})

	t.Run("prune", func(t *testing.T) {
		s := open(t)
		var recs []Record
		for i := range 12000 {
			recs = append(recs, sample(i))
		}
		if err := s.Write(ctx, recs, nil); err != nil {
			t.Fatal(err)
		}
		n, err := s.Prune(ctx, t0.Add(11000*time.Second))
		if err != nil || n != 11000 {
			t.Fatalf("pruned %d (%v), want 11000", n, err)
		}
		if got, _ := Search(ctx, s, Query{Limit: 5000}); len(got) != 1000 {
			t.Errorf("%d records left, want 1000", len(got))
		}
	})

	t.Run("days", func(t *testing.T) {
		// Calls over three days and a half, one every 10 minutes.
		s := open(t)
		var recs []Record
		for i := range 6 * 84 {
			r := sample(i)
			r.At = t0.Add(time.Duration(i) * 10 * time.Minute)
			r.Duration = 0
			if i%2 == 0 {
				r.Rule = "rate"
			}
			recs = append(recs, r)
		}
		if err := s.Write(ctx, recs, nil); err != nil {
			t.Fatal(err)
		}
		first := recs[0]
		if err := s.Write(ctx, nil, []End{{CallID: first.CallID, At: first.At, Duration: time.Minute}}); err != nil {
			t.Fatal(err)
		}
		got, err := Search(ctx, s, Query{OrigID: first.OrigID})
		if err != nil || len(got) != 1 || got[0].Duration != time.Minute {
			t.Fatalf("the first day's call after its end: %+v %v", got, err)
		}
		// A window across midnight, newest first, limited.
		got, err = Search(ctx, s, Query{From: t0.Add(13 * time.Hour), To: t0.Add(15 * time.Hour), Limit: 20})
		if err != nil || len(got) != 12 || !got[0].At.Equal(t0.Add(14*time.Hour+50*time.Minute)) || !got[11].At.Equal(t0.Add(13*time.Hour)) {
			t.Fatalf("window across midnight: %d records (%v)", len(got), err)
		}
		got, _ = Search(ctx, s, Query{Limit: 3})
		if len(got) != 3 || !got[0].At.Equal(recs[len(recs)-1].At) {
			t.Errorf("newest three: %+v", got)
		}
		hits, err := s.RuleHits(ctx, t0.Add(12*time.Hour), 6*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, h := range hits {
			total += h.Calls
		}
		if want := int64((len(recs) - 72) / 2); total != want {
			t.Errorf("rule hits since hour 12: %d, want %d", total, want)
		}
		// Keep the last day and a half.
		cut := t0.Add(48 * time.Hour)
		n, err := s.Prune(ctx, cut)
		if err != nil || n != 6*48 {
			t.Fatalf("pruned %d (%v), want %d", n, err, 6*48)
		}
		left, _ := Search(ctx, s, Query{Limit: 10000})
		if len(left) != len(recs)-6*48 || left[len(left)-1].At.Before(cut) {
			t.Errorf("%d records left, the oldest at %s; want %d from %s", len(left), left[len(left)-1].At, len(recs)-6*48, cut)
		}
	})

	t.Run("rule hits", func(t *testing.T) {
		s := open(t)
		var recs []Record
		for i := range 180 { // one call a second for 3 minutes
			r := sample(i)
			if i%3 == 0 {
				r.Rule = "dnc"
			} else if i < 60 {
				r.Rule = "rate"
			}
			recs = append(recs, r)
		}
		if err := s.Write(ctx, recs, nil); err != nil {
			t.Fatal(err)
		}
		got, err := s.RuleHits(ctx, t0.Add(time.Minute), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		want := []RuleCount{{"dnc", t0.Add(time.Minute), 20}, {"dnc", t0.Add(2 * time.Minute), 20}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rule hits since minute 1:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("lists and audit", func(t *testing.T) {
		s := open(t)
		if id, err := s.LastChange(ctx); err != nil || id != 0 {
			t.Fatalf("last change of an empty trail: %d %v", id, err)
		}
		add := func(list, number string, expires time.Time) {
			t.Helper()
			e := Entry{List: list, Number: number, Note: "complaint 17", AddedBy: "alice", Added: t0, Expires: expires}
			if err := s.PutEntry(ctx, e, Change{At: t0, Actor: "alice", Action: "list.add", Target: list + "/" + number}); err != nil {
				t.Fatal(err)
			}
		}
		add("dnc", "12025550100", time.Time{})
		add("dnc", "12025550101", t0.Add(time.Hour))
		add("block", "12025550199", time.Time{})
		add("dnc", "12025550100", t0.Add(48*time.Hour)) // replaces
		got, err := s.Entries(ctx, "dnc", "", t0.Add(2*time.Hour))
		if err != nil || len(got) != 1 || got[0].Number != "12025550100" || !got[0].Expires.Equal(t0.Add(48*time.Hour)) || got[0].Note != "complaint 17" {
			t.Fatalf("dnc entries after the second's expiry: %+v %v", got, err)
		}
		if all, _ := s.Entries(ctx, "", "", t0); len(all) != 3 {
			t.Errorf("every list: %d entries, want 3", len(all))
		}
		if one, _ := s.Entries(ctx, "", "12025550199", t0); len(one) != 1 || one[0].List != "block" {
			t.Errorf("the lists of 12025550199: %+v, want block", one)
		}
		if one, _ := s.Entries(ctx, "dnc", "12025550101", t0); len(one) != 1 || one[0].Number != "12025550101" {
			t.Errorf("one entry of dnc: %+v", one)
		}
		if ok, err := s.DeleteEntry(ctx, "dnc", "12025550100", Change{At: t0, Actor: "bob", Action: "list.remove", Target: "dnc/12025550100"}); !ok || err != nil {
			t.Fatalf("delete: %v %v", ok, err)
		}
		if ok, _ := s.DeleteEntry(ctx, "dnc", "12025550100", Change{At: t0, Actor: "bob", Action: "list.remove"}); ok {
			t.Error("deleting a missing entry reported it found")
		}
		if err := s.Audit(ctx, Change{At: t0, Actor: "carol", Action: "complaint", Target: "12025550199", Detail: "fraud"}); err != nil {
			t.Fatal(err)
		}
		trail, err := s.Changes(ctx, 0, 10)
		if err != nil || len(trail) != 6 {
			t.Fatalf("audit trail: %d lines (%v), want 6 (4 adds, 1 remove, 1 complaint; the failed remove is not one)", len(trail), err)
		}
		if trail[0].Actor != "carol" || trail[1].Action != "list.remove" || trail[5].Target != "dnc/12025550100" {
			t.Errorf("trail not newest first: %+v", trail)
		}
		last, _ := s.LastChange(ctx)
		if last != trail[0].ID {
			t.Errorf("last change %d, newest line %d", last, trail[0].ID)
		}
		older, _ := s.Changes(ctx, trail[1].ID, 10)
		if len(older) != 4 || older[0].ID != trail[2].ID {
			t.Errorf("page before %d: %+v", trail[1].ID, older)
		}
	})

	t.Run("writer", func(t *testing.T) {
		s := open(t)
		w := NewWriter(s, 4, nil)
		for i := range 6 {
			r := sample(i)
			w.Add(&r) // not running yet: 4 queued, 2 dropped
		}
		if w.Dropped() != 2 {
			t.Fatalf("dropped %d with a queue of 4 and 6 records, want 2", w.Dropped())
		}
		ctx, cancel := context.WithCancel(context.Background())
		go w.Run(ctx, 5*time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for w.Written() < 4 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		r := sample(10)
		w.Add(&r)
		w.End(End{CallID: r.CallID, At: r.At, Duration: time.Minute})
		cancel()
		<-w.Done()
		if w.Written() != 6 || w.Failed() != 0 {
			t.Fatalf("written %d, failed %d; want 6 written (4, then a record and its end at the stop)", w.Written(), w.Failed())
		}
		got, _ := Search(context.Background(), s, Query{})
		if len(got) != 5 || got[0].Duration != time.Minute {
			t.Errorf("%d records stored (newest lasting %v), want 5, the newest 1m", len(got), got[0].Duration)
		}
	})
}
