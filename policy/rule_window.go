package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // window rules need zones on machines without a zoneinfo database

	"github.com/nyaruka/phonenumbers"
)

// window: calling hours. A call is allowed from hours ("HH:MM-HH:MM",
// default 08:00-21:00) on days (default all), never on holidays, in the
// callee's local time; timezone (default UTC) when the number does not
// tell one zone.
func init() {
	register(&ruleType{
		name: "window",
		code: 603,
		defaults: func(r *RuleConfig) {
			orDefault(&r.Hours, "08:00-21:00")
			orDefault(&r.TimeZone, "UTC")
			if r.Days == nil {
				r.Days = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
			}
		},
		validate: func(r *RuleConfig) []error {
			var p problems
			if _, _, err := parseHours(r.Hours); err != nil {
				p.addf("hours: %v", err)
			}
			if len(r.Days) == 0 {
				p.addf("days: at least one day")
			}
			for j, d := range r.Days {
				if _, ok := weekdays[d]; !ok {
					p.addf("days[%d]: %q is not one of mon, tue, wed, thu, fri, sat, sun", j, d)
				}
			}
			for j, h := range r.Holidays {
				if _, err := time.Parse(time.DateOnly, h); err != nil {
					p.addf("holidays[%d]: %q is not a YYYY-MM-DD date", j, h)
				}
			}
			if _, err := time.LoadLocation(r.TimeZone); err != nil {
				p.addf("timezone: %q is not an IANA time zone", r.TimeZone)
			}
			return p
		},
		compile: func(r *rule) error {
			w, err := compileWindow(r.RuleConfig)
			r.compiled = w
			return err
		},
		eval: windowHit,
	})
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
func windowHit(_ *Engine, _ context.Context, r *rule, in Input, now time.Time) verdict {
	if in.Callee == "" {
		return verdict{}
	}
	w := r.compiled.(*callingWindow)
	locs := calleeZones(in.Callee)
	if len(locs) == 0 || len(locs) > maxZones {
		locs = []*time.Location{w.fallback}
	}
	for _, loc := range locs {
		if !w.open(now, loc) {
			t := now.In(loc)
			return fired(r.hitf("window", "%s local=%s %s zone=%s hours=%s", in.Callee, t.Weekday().String()[:3], t.Format("2006-01-02T15:04"), loc, r.Hours))
		}
	}
	return verdict{}
}
