package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // window rules need zones on machines without a zoneinfo database

	"github.com/nyaruka/phonenumbers"
)

// This file holds the rule types that keep state in policy/store or read
// the clock: window, protect, one_ring, callback, attestation, reputation.

// Store key prefixes shared by the rules and CallEnded. The one-ring mark is
// not per rule: the callback shield reads what any one_ring rule flagged.
const (
	keyOneRing   = "onering:"
	keyComplaint = "trunk:" // complaint subject prefix for a source trunk
)

func parseSource(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// parseHours reads "HH:MM-HH:MM" into minutes of the day [from, to). A
// window that ends before it starts runs over midnight.
func parseHours(s string) (from, to int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not HH:MM-HH:MM", s)
	}
	clock := func(v string) (int, error) {
		t, err := time.Parse("15:04", strings.TrimSpace(v))
		if err != nil {
			if strings.TrimSpace(v) == "24:00" {
				return 24 * 60, nil
			}
			return 0, fmt.Errorf("%q is not HH:MM-HH:MM", s)
		}
		return t.Hour()*60 + t.Minute(), nil
	}
	if from, err = clock(a); err != nil {
		return 0, 0, err
	}
	if to, err = clock(b); err != nil {
		return 0, 0, err
	}
	if from == to {
		return 0, 0, fmt.Errorf("%q is an empty window", s)
	}
	return from, to, nil
}

// callingWindow is a compiled window rule.
type callingWindow struct {
	from, to int // minutes of the day
	days     [7]bool
	holidays map[string]bool // YYYY-MM-DD in the callee's zone
	fallback *time.Location
}

func compileWindow(rc RuleConfig) (*callingWindow, error) {
	w := &callingWindow{holidays: map[string]bool{}}
	var err error
	if w.from, w.to, err = parseHours(rc.Hours); err != nil {
		return nil, err
	}
	for _, d := range rc.Days {
		w.days[weekdays[d]] = true
	}
	for _, h := range rc.Holidays {
		w.holidays[h] = true
	}
	if w.fallback, err = time.LoadLocation(rc.TimeZone); err != nil {
		return nil, fmt.Errorf("timezone %q: %w", rc.TimeZone, err)
	}
	return w, nil
}

// open reports whether a call at now is inside the window in loc.
func (w *callingWindow) open(now time.Time, loc *time.Location) bool {
	t := now.In(loc)
	if !w.days[t.Weekday()] || w.holidays[t.Format(time.DateOnly)] {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	if w.from < w.to {
		return m >= w.from && m < w.to
	}
	return m >= w.from || m < w.to // over midnight
}

// zones caches time zone lookups: phonenumbers names zones per number
// prefix, and loading a zone is too slow for every call.
var zones sync.Map // zone name -> *time.Location (nil when unknown)

func location(name string) *time.Location {
	if v, ok := zones.Load(name); ok {
		return v.(*time.Location)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = nil
	}
	zones.Store(name, loc)
	return loc
}

// calleeZones are the time zones a callee may be in, per libphonenumber's
// geocoding data; none when the number does not tell.
func calleeZones(tn string) []*time.Location {
	n, err := phonenumbers.Parse("+"+tn, "")
	if err != nil {
		return nil
	}
	names, err := phonenumbers.GetTimezonesForNumber(n)
	if err != nil {
		return nil
	}
	var locs []*time.Location
	for _, name := range names {
		if loc := location(name); loc != nil && name != phonenumbers.UNKNOWN_TIMEZONE {
			locs = append(locs, loc)
		}
	}
	return locs
}

// maxZones is the most zones a number may map to and still count as
// geographic. More (a US toll-free number maps to 43, from Guam to
// Newfoundland) says nothing about where the callee is.
const maxZones = 3

// windowHit fires when the callee's local time is outside the window. A
// number that may lie in up to maxZones zones (an area code across a zone
// line) must be inside the window in all of them; a number without a known
// zone, or a non-geographic one, uses the rule's timezone.
func (r *rule) windowHit(in Input, now time.Time) (Hit, bool) {
	if in.Callee == "" {
		return Hit{}, false
	}
	locs := calleeZones(in.Callee)
	if len(locs) == 0 || len(locs) > maxZones {
		locs = []*time.Location{r.window.fallback}
	}
	for _, loc := range locs {
		if !r.window.open(now, loc) {
			t := now.In(loc)
			return r.hitf("window", "%s local=%s %s zone=%s hours=%s", in.Callee, t.Weekday().String()[:3], t.Format("2006-01-02T15:04"), loc, r.Hours), true
		}
	}
	return Hit{}, false
}

// hitf builds the rule's hit with a formatted entry.
func (r *rule) hitf(list, format string, a ...any) Hit {
	return Hit{Rule: r.Name, Mode: r.Mode, Action: r.Action.Type, List: list, Entry: fmt.Sprintf(format, a...)}
}

// storeError is the hit of a store operation that failed: it always goes
// to the call record and the metrics; Evaluate applies on_store_error.
func (r *rule) storeError(list, entry string, err error) (Hit, bool) {
	return Hit{Rule: r.Name, Mode: r.Mode, Action: ActionStoreError, List: list,
		Entry: fmt.Sprintf("%s on_store_error=%s error=%v", entry, r.OnStoreError, err)}, true
}

// attestRank orders attestation levels: A 3, B 2, C 1, none 0.
func attestRank(level string) int {
	switch level {
	case "A":
		return 3
	case "B":
		return 2
	case "C":
		return 1
	}
	return 0
}

// verifiedAt reports whether the call's identity was verified at level or
// better.
func verifiedAt(in Input, level string) bool {
	return in.Verified && attestRank(in.Attest) >= attestRank(level)
}

// attestationHit fires when the call was not verified at min_attest.
func (r *rule) attestationHit(in Input) (Hit, bool) {
	if verifiedAt(in, r.MinAttest) {
		return Hit{}, false
	}
	got := "unverified"
	if in.Verified {
		got = in.Attest
	}
	return r.hitf("attestation", "%s attest=%s min=%s", in.Caller, got, r.MinAttest), true
}

// protectHit counts the distinct callers of the callee; above the limit
// the callee is protected for flag_for, during which only the rule's
// allow-lists and calls verified at min_attest pass.
func (e *Engine) protectHit(ctx context.Context, r *rule, in Input, now time.Time) (Hit, bool) {
	if e.store == nil || in.Callee == "" {
		return Hit{}, false
	}
	key := "protect:" + r.Name + ":" + in.Callee
	caller := in.Caller
	if caller == "" {
		caller = "anonymous@" + in.Source.String()
	}
	n, err := e.store.Distinct().Add(ctx, key, caller, r.Window, now)
	if err != nil {
		return r.storeError("protect", in.Callee, err)
	}
	until, on, err := e.store.Flags().Get(ctx, key, now)
	if err != nil {
		return r.storeError("protect", in.Callee, err)
	}
	if !on && n > r.Distinct {
		if err := e.store.Flags().Set(ctx, key, r.FlagFor, now); err != nil {
			return r.storeError("protect", in.Callee, err)
		}
		until, on = now.Add(r.FlagFor), true
	}
	if !on || verifiedAt(in, r.MinAttest) {
		return Hit{}, false
	}
	if _, _, ok := listed(r.lists, in.Caller, now); ok {
		return Hit{}, false
	}
	return r.hitf("protect", "%s callers=%d limit=%d window=%s until=%s", in.Callee, n, r.Distinct, r.Window, until.UTC().Format(time.RFC3339)), true
}

// flagHit fires when number carries the one-ring mark.
func (e *Engine) flagHit(ctx context.Context, r *rule, number string, now time.Time) (Hit, bool) {
	if e.store == nil || number == "" {
		return Hit{}, false
	}
	until, on, err := e.store.Flags().Get(ctx, keyOneRing+number, now)
	if err != nil {
		return r.storeError("one_ring", number, err)
	}
	if !on {
		return Hit{}, false
	}
	return r.hitf("one_ring", "%s flagged until=%s", number, until.UTC().Format(time.RFC3339)), true
}

// complaintSubject is who a 607 counts against: the calling number when its
// identity was verified at A, else the trunk it came from, so that the
// owners of spoofed numbers are not punished.
func complaintSubject(in Input) string {
	if in.Caller != "" && verifiedAt(in, "A") {
		return in.Caller
	}
	return trunkSubject(in)
}

// trunkSubject is the complaint subject of the call's source trunk.
func trunkSubject(in Input) string { return keyComplaint + in.Source.String() }

// reputationHit fires when the subject has at least limit complaints
// within the window.
func (e *Engine) reputationHit(ctx context.Context, r *rule, in Input, now time.Time) (Hit, bool) {
	if e.store == nil {
		return Hit{}, false
	}
	subject := in.Caller
	if r.Subject == "source" || subject == "" {
		subject = trunkSubject(in)
	}
	n, err := e.store.Complaints().Count(ctx, subject, r.Window, now)
	if err != nil {
		return r.storeError("complaints", subject, err)
	}
	if n < r.Limit {
		return Hit{}, false
	}
	return r.hitf("complaints", "%s count=%d limit=%d window=%s", subject, n, r.Limit, r.Window), true
}

// concurrentHit takes a slot for the call under the rule's key and fires
// when that makes more than limit calls in progress. A rejecting hit gives
// its slot back at once; otherwise the slot is held (d.Held) until Release.
func (e *Engine) concurrentHit(ctx context.Context, r *rule, in Input, now time.Time, d *Decision) (Hit, bool) {
	k := keyValue(r.Key, in)
	if e.store == nil || in.CallID == "" || k == "" {
		return Hit{}, false
	}
	slot := Slot{Key: "concurrent:" + r.Name + ":" + k, Member: in.CallID}
	n, err := e.store.Concurrency().Acquire(ctx, slot.Key, slot.Member, r.MaxDuration, now)
	if err != nil {
		return r.storeError(r.Key, k, err)
	}
	if n <= r.Limit {
		d.Held = append(d.Held, slot)
		return Hit{}, false
	}
	if r.Mode == "enforce" && r.Action.Type == "reject" {
		if err := e.store.Concurrency().Release(ctx, slot.Key, slot.Member); err != nil {
			// The slot frees itself after max_duration; record the error.
			h, _ := r.storeError(r.Key, k, err)
			d.Hits = append(d.Hits, h)
		}
	} else {
		d.Held = append(d.Held, slot)
	}
	return r.hitf(r.Key, "%s calls=%d limit=%d", k, n, r.Limit), true
}

// Release gives back the slots a call held; errors are counted by the
// caller (a lost release frees itself after max_duration).
func (e *Engine) Release(ctx context.Context, slots []Slot) (failed int) {
	for _, s := range slots {
		if err := e.store.Concurrency().Release(ctx, s.Key, s.Member); err != nil {
			failed++
		}
	}
	return failed
}
