// Package policy is the policy engine: rules an admin writes in YAML that
// allow, reject or tag calls before they are signed or reach the PBX.
//
// Rule types: list (allow/block/tag by number list), dnc (Do-Not-Call with
// consent), window (calling hours in the callee's time zone), rate, bombing
// (one caller to one callee), protect (victim protection: many distinct
// callers to one callee), one_ring (Wangiri callers, flagged from how their
// calls ended), callback (the callback shield: calls to flagged numbers),
// hygiene (caller-ID checks), concurrent (calls in progress), attestation
// (minimum verified attestation) and reputation (607 complaints). State
// lives in policy/store.
package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stirgate/stirgate/policy/numbers"
)

// Settings is the `policy:` section of stirgate.yaml.
type Settings struct {
	// Files are policy files, merged in order (relative to stirgate.yaml).
	Files []string `yaml:"files"`
}

// ApplyDefaults does nothing: no files means no rules.
func (s *Settings) ApplyDefaults() {}

// Validate checks the section.
func (s *Settings) Validate() error {
	for i, f := range s.Files {
		if f == "" {
			return fmt.Errorf("files[%d]: empty path", i)
		}
	}
	return nil
}

// File is one policy file (configs/policy.yaml documents it).
type File struct {
	// Emergency numbers are never blocked by any rule.
	Emergency []string `yaml:"emergency"`
	// Lists of numbers, used by rules by name.
	Lists []ListConfig `yaml:"lists"`
	// Classes map a call class (e.g. telemarketing) to the customers in it.
	Classes map[string][]string `yaml:"classes"`
	// Rules, evaluated in the order of this file (see Engine).
	Rules []RuleConfig `yaml:"rules"`
}

// ListConfig is a named list of numbers: inline, or from a file (one number
// or prefix* per line, optional ",YYYY-MM-DD" expiry; or the FTC/CRTC
// "area,number" CSV).
type ListConfig struct {
	Name        string   `yaml:"name"`
	File        string   `yaml:"file"`
	Format      string   `yaml:"format"`       // lines | area_number_csv
	CountryCode string   `yaml:"country_code"` // prepended to area,number rows
	Numbers     []string `yaml:"numbers"`
}

// RuleConfig is one rule.
type RuleConfig struct {
	Name string `yaml:"name"`
	// Type: "list" (allow/block by list), "dnc" (Do-Not-Call with consent),
	// "rate" (more than limit calls per window for one key), "bombing"
	// (one caller calling one callee more than each threshold allows) or
	// "hygiene" (caller-ID checks).
	Type string `yaml:"type"`
	// Mode: enforce, or report (record what would happen, change nothing).
	Mode  string      `yaml:"mode"`
	Match MatchConfig `yaml:"match"`
	// Number the lists are looked up with: callee (default) or caller.
	Number string `yaml:"number"`
	// Lists the rule looks the number up in (for dnc: the DNC lists).
	Lists []string `yaml:"lists"`
	// Consent lists exempt a callee from a dnc rule (existing relationship).
	Consent []string `yaml:"consent"`
	// Rate rules: what is counted (source | caller | callee | customer |
	// realm), how many calls are allowed per window.
	Key    string        `yaml:"key"`
	Limit  int           `yaml:"limit"`
	Window time.Duration `yaml:"window"`
	// Bombing rules: caller->callee thresholds (default 5 in 15m, 9 in 1h,
	// 15 in 24h, after published anti-harassment practice).
	Thresholds []Threshold `yaml:"thresholds"`
	// Hygiene rules: which caller-ID checks fire the action:
	// anonymous (no calling number), same_number (caller = callee),
	// invalid (not a valid number per libphonenumber), own_number (the
	// caller is on one of the rule's lists: our own customers' numbers,
	// arriving from the trunk).
	Checks []string `yaml:"checks"`

	// Protect rules: more than Distinct different callers to one callee
	// within Window put the callee into protect mode for FlagFor; then only
	// callers on Lists or calls verified at MinAttest (default A) pass.
	Distinct int `yaml:"distinct"`
	// FlagFor: how long protect mode (protect) or the one-ring mark
	// (one_ring) lasts.
	FlagFor time.Duration `yaml:"flag_for"`
	// MinAttest: attestation rules fire below it (A > B > C > unsigned);
	// protect rules let calls verified at it through.
	MinAttest string `yaml:"min_attest"`

	// One-ring rules: a caller whose calls to at least Callees distinct
	// callees within Window were cancelled within RingMax of ringing in at
	// least Percent % of its calls is marked for FlagFor.
	Callees int           `yaml:"callees"`
	RingMax time.Duration `yaml:"ring_max"`
	Percent int           `yaml:"percent"`

	// Window rules: calls are allowed from Hours ("HH:MM-HH:MM") on Days
	// (mon..sun), never on Holidays (YYYY-MM-DD), in the callee's local
	// time; TimeZone is used when the number does not tell one zone.
	Hours    string   `yaml:"hours"`
	Days     []string `yaml:"days"`
	Holidays []string `yaml:"holidays"`
	TimeZone string   `yaml:"timezone"`

	// Concurrent rules: at most Limit calls in progress per Key (customer,
	// source, realm); a slot is freed when the call ends, or after
	// MaxDuration (default 4h) if its end was never seen.
	MaxDuration time.Duration `yaml:"max_duration"`

	// Reputation rules: Subject (caller | source) with at least Limit 607
	// complaints within Window.
	Subject string `yaml:"subject"`

	// OnStoreError is what a rule that keeps state in policy/store does
	// when the store fails (ErrFull at the key cap, an unreachable Redis):
	// open (default) lets the call through; closed rejects it with the
	// rule's rejection, or 503 Service Unavailable with Retry-After (retry_after,
	// default 5 s) when the rule tags. Either way the error is counted and
	// recorded as a store_error hit. Only for rate, concurrent, bombing,
	// protect, one_ring, callback and reputation rules.
	OnStoreError string `yaml:"on_store_error"`

	Action ActionConfig `yaml:"action"`
}

// usesStore are the rule types that keep state in policy/store, for which
// on_store_error applies.
var usesStore = map[string]bool{"rate": true, "concurrent": true, "bombing": true, "protect": true, "one_ring": true, "callback": true, "reputation": true}

// storeErrorRetryAfter is the Retry-After (seconds) of the 503 a tag rule
// with on_store_error: closed rejects a call with when the store fails.
const storeErrorRetryAfter = 5

// lateTypes run after verification on inbound calls: they need its result
// (attestation, protect) or answer for a verified identity (reputation).
var lateTypes = map[string]bool{"attestation": true, "protect": true, "reputation": true}

// realmOf is the one realm a rule type makes sense in: inbound protections
// on the outside, the callback shield on the inside.
var realmOf = map[string]string{"attestation": "outside", "protect": "outside", "reputation": "outside", "one_ring": "outside", "callback": "inside"}

// Threshold is "more than Limit calls within Window".
type Threshold struct {
	Limit  int           `yaml:"limit"`
	Window time.Duration `yaml:"window"`
}

// DefaultBombing are the caller->callee thresholds of a bombing rule.
var DefaultBombing = []Threshold{{5, 15 * time.Minute}, {9, time.Hour}, {15, 24 * time.Hour}}

// MatchConfig narrows which calls a rule looks at; empty fields match all.
type MatchConfig struct {
	Realm     string   `yaml:"realm"`     // inside | outside
	Class     string   `yaml:"class"`     // a class of `classes`
	Customers []string `yaml:"customers"` // customer names
	Sources   []string `yaml:"sources"`   // source addresses or CIDRs (trunks)
}

// ActionConfig is what a rule does when its lists match.
type ActionConfig struct {
	// Type: allow (stop evaluating, let the call through), reject, tag.
	Type string `yaml:"type"`
	// Reject: SIP code and reason phrase (defaults: 603 Decline for dnc,
	// 608 Rejected for list), and an optional Call-Info redress URI (608).
	Code     int    `yaml:"code"`
	Reason   string `yaml:"reason"`
	CallInfo string `yaml:"call_info"`
	// RetryAfter seconds on a rejection (rate rules default to the window).
	RetryAfter int `yaml:"retry_after"`
	// Tag: the header and value added for the PBX.
	Header string `yaml:"header"`
	Value  string `yaml:"value"`
}

// DefaultEmergency are numbers no rule may block (China, EU, US).
var DefaultEmergency = []string{"110", "112", "119", "120", "122", "911"}

// ApplyDefaults fills absent values.
func (f *File) ApplyDefaults() {
	if f.Emergency == nil {
		f.Emergency = append([]string(nil), DefaultEmergency...)
	}
	for i := range f.Lists {
		if f.Lists[i].Format == "" {
			f.Lists[i].Format = "lines"
		}
	}
	for i := range f.Rules {
		r := &f.Rules[i]
		if r.Mode == "" {
			r.Mode = "enforce"
		}
		if r.Number == "" {
			r.Number = "callee"
		}
		if r.Match.Realm == "" {
			r.Match.Realm = realmOf[r.Type]
		}
		r.applyTypeDefaults()
		if usesStore[r.Type] && r.OnStoreError == "" {
			r.OnStoreError = "open"
		}
		if r.Action.Type == "reject" && r.Action.Code == 0 {
			r.Action.Code = map[string]int{"dnc": 603, "window": 603, "rate": 503, "concurrent": 503, "bombing": 486, "protect": 486, "hygiene": 608}[r.Type]
			if r.Action.Code == 0 {
				r.Action.Code = 608
			}
		}
		if r.Type == "bombing" && len(r.Thresholds) == 0 {
			r.Thresholds = append([]Threshold(nil), DefaultBombing...)
		}
		if r.Type == "rate" && r.Action.Type == "reject" && r.Action.RetryAfter == 0 {
			r.Action.RetryAfter = int((r.Window + time.Second - 1) / time.Second)
		}
		if r.Action.Type == "reject" && r.Action.Reason == "" {
			r.Action.Reason = map[int]string{603: "Decline", 608: "Rejected", 403: "Forbidden", 486: "Busy Here"}[r.Action.Code]
			if r.Action.Reason == "" {
				r.Action.Reason = "Rejected"
			}
		}
	}
}

// Defaults of the stateful rule types, after published anti-harassment
// practice; configs/policy.yaml documents them.
func (r *RuleConfig) applyTypeDefaults() {
	switch r.Type {
	case "protect":
		orDefault(&r.Distinct, 10)
		orDefault(&r.Window, 10*time.Minute)
		orDefault(&r.FlagFor, 30*time.Minute)
		orDefault(&r.MinAttest, "A")
	case "one_ring":
		orDefault(&r.Callees, 5)
		orDefault(&r.Percent, 80)
		orDefault(&r.Window, time.Hour)
		orDefault(&r.RingMax, 5*time.Second)
		orDefault(&r.FlagFor, 24*time.Hour)
	case "window":
		orDefault(&r.Hours, "08:00-21:00")
		orDefault(&r.TimeZone, "UTC")
		if r.Days == nil {
			r.Days = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
		}
	case "concurrent":
		orDefault(&r.MaxDuration, 4*time.Hour)
	case "reputation":
		orDefault(&r.Limit, 3)
		orDefault(&r.Window, 24*time.Hour)
		orDefault(&r.Subject, "caller")
	}
}

// orDefault sets *v to d when it is the zero value (absent from the file).
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

func oneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
}

// Validate checks the file; errors start with their YAML key path. Lists
// are loaded by Compile, which reports their own file:line errors.
func (f *File) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, e := range f.Emergency {
		if tn, ok := numbers.Canonical(e); !ok || tn != e {
			add(fmt.Errorf("emergency[%d]: %q is not a number", i, e))
		}
	}
	lists := map[string]bool{}
	for i, l := range f.Lists {
		p := fmt.Sprintf("lists[%d].", i)
		if l.Name == "" {
			add(errors.New(p + "name: required"))
		} else if lists[l.Name] {
			add(fmt.Errorf("%sname: %q is used twice", p, l.Name))
		}
		lists[l.Name] = true
		if (l.File == "") == (len(l.Numbers) == 0) {
			add(errors.New(p + "file: give either file or numbers"))
		}
		add(oneOf(p+"format", l.Format, "lines", "area_number_csv"))
	}
	for class, customers := range f.Classes {
		if len(customers) == 0 {
			add(fmt.Errorf("classes.%s: at least one customer", class))
		}
	}
	names := map[string]bool{}
	for i, r := range f.Rules {
		p := fmt.Sprintf("rules[%d].", i)
		if r.Name == "" {
			add(errors.New(p + "name: required"))
		} else if names[r.Name] {
			add(fmt.Errorf("%sname: %q is used twice", p, r.Name))
		}
		names[r.Name] = true
		add(oneOf(p+"type", r.Type, "list", "dnc", "window", "rate", "concurrent", "bombing", "protect", "one_ring", "callback", "hygiene", "attestation", "reputation"))
		add(oneOf(p+"mode", r.Mode, "enforce", "report"))
		add(oneOf(p+"number", r.Number, "callee", "caller"))
		if r.Match.Realm != "" {
			add(oneOf(p+"match.realm", r.Match.Realm, "inside", "outside"))
		}
		for j, src := range r.Match.Sources {
			if _, err := parseSource(src); err != nil {
				add(fmt.Errorf("%smatch.sources[%d]: %v", p, j, err))
			}
		}
		if want := realmOf[r.Type]; want != "" && r.Match.Realm != want {
			add(fmt.Errorf("%smatch.realm: %s rules apply to the %s realm only", p, r.Type, want))
		}
		if r.Match.Class != "" {
			if _, ok := f.Classes[r.Match.Class]; !ok {
				add(fmt.Errorf("%smatch.class: %q is not in classes", p, r.Match.Class))
			}
		}
		if r.Type == "rate" {
			add(oneOf(p+"key", r.Key, "source", "caller", "callee", "customer", "realm"))
			if r.Limit < 1 {
				add(fmt.Errorf("%slimit: %d, want at least 1", p, r.Limit))
			}
			if r.Window < time.Second || r.Window > 24*time.Hour {
				add(fmt.Errorf("%swindow: %s out of range 1s..24h", p, r.Window))
			}
			if len(r.Lists) > 0 {
				add(errors.New(p + "lists: a rate rule counts calls, it has no lists"))
			}
		} else if r.Type == "hygiene" {
			if len(r.Checks) == 0 {
				add(errors.New(p + "checks: at least one of anonymous, same_number, invalid, own_number"))
			}
			own := false
			for j, c := range r.Checks {
				add(oneOf(fmt.Sprintf("%schecks[%d]", p, j), c, "anonymous", "same_number", "invalid", "own_number"))
				own = own || c == "own_number"
			}
			if own != (len(r.Lists) > 0) {
				add(errors.New(p + "lists: own_number needs the lists of our numbers, and only it uses lists"))
			}
		} else if r.Type == "bombing" {
			for j, th := range r.Thresholds {
				if th.Limit < 1 || th.Window < time.Second || th.Window > 7*24*time.Hour {
					add(fmt.Errorf("%sthresholds[%d]: want limit >= 1 and window 1s..168h", p, j))
				}
			}
			if len(r.Lists) > 0 {
				add(errors.New(p + "lists: a bombing rule counts calls, it has no lists"))
			}
		} else if stateful[r.Type] {
			for _, err := range r.validateStateful() {
				add(fmt.Errorf("%s%w", p, err))
			}
		} else if len(r.Lists) == 0 {
			add(errors.New(p + "lists: at least one list"))
		}
		for j, l := range r.Lists {
			if !lists[l] {
				add(fmt.Errorf("%slists[%d]: no list named %q", p, j, l))
			}
		}
		for j, l := range r.Consent {
			if !lists[l] {
				add(fmt.Errorf("%sconsent[%d]: no list named %q", p, j, l))
			}
		}
		if usesStore[r.Type] {
			add(oneOf(p+"on_store_error", r.OnStoreError, "open", "closed"))
		} else if r.OnStoreError != "" {
			add(fmt.Errorf("%son_store_error: %s rules keep no state", p, r.Type))
		}
		if r.Type != "dnc" && len(r.Consent) > 0 {
			add(errors.New(p + "consent: only dnc rules have consent lists"))
		}
		a := r.Action
		add(oneOf(p+"action.type", a.Type, "allow", "reject", "tag"))
		switch a.Type {
		case "reject":
			if a.Code < 400 || a.Code > 699 {
				add(fmt.Errorf("%saction.code: %d is not a 4xx-6xx rejection", p, a.Code))
			}
			if strings.ContainsAny(a.Reason+a.CallInfo, "\r\n") {
				add(errors.New(p + "action.reason: no line breaks"))
			}
		case "tag":
			if !isToken(a.Header) {
				add(fmt.Errorf("%saction.header: %q is not a header name", p, a.Header))
			}
			if a.Value == "" || strings.ContainsAny(a.Value, "\r\n") {
				add(errors.New(p + "action.value: required, one line"))
			}
		}
		if r.Type != "list" && a.Type == "allow" {
			add(fmt.Errorf("%saction.type: a %s rule rejects or tags", p, r.Type))
		}
		if a.RetryAfter < 0 || a.RetryAfter > 86400 {
			add(fmt.Errorf("%saction.retry_after: %d out of range 0..86400", p, a.RetryAfter))
		}
	}
	return errors.Join(errs...)
}

// stateful are the rule types validated by validateStateful.
var stateful = map[string]bool{"concurrent": true, "window": true, "protect": true, "one_ring": true, "callback": true, "attestation": true, "reputation": true}

// validateStateful checks the parameters of the rule types added on
// policy/store and the clock; errors start with the key.
func (r *RuleConfig) validateStateful() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	window := func(max time.Duration) {
		if r.Window < time.Second || r.Window > max {
			add("window: %s out of range 1s..%s", r.Window, max)
		}
	}
	flagFor := func() {
		if r.FlagFor < time.Second || r.FlagFor > 30*24*time.Hour {
			add("flag_for: %s out of range 1s..720h", r.FlagFor)
		}
	}
	attestLevel := func(v string) {
		if v != "A" && v != "B" && v != "C" {
			add("min_attest: %q is not one of A, B, C", v)
		}
	}
	noLists := func() {
		if len(r.Lists) > 0 {
			add("lists: a %s rule has no lists", r.Type)
		}
	}
	switch r.Type {
	case "window":
		noLists()
		if _, _, err := parseHours(r.Hours); err != nil {
			add("hours: %v", err)
		}
		if len(r.Days) == 0 {
			add("days: at least one day")
		}
		for j, d := range r.Days {
			if _, ok := weekdays[d]; !ok {
				add("days[%d]: %q is not one of mon, tue, wed, thu, fri, sat, sun", j, d)
			}
		}
		for j, h := range r.Holidays {
			if _, err := time.Parse(time.DateOnly, h); err != nil {
				add("holidays[%d]: %q is not a YYYY-MM-DD date", j, h)
			}
		}
		if _, err := time.LoadLocation(r.TimeZone); err != nil {
			add("timezone: %q is not an IANA time zone", r.TimeZone)
		}
	case "protect":
		if r.Distinct < 1 || r.Distinct > 1000 {
			add("distinct: %d out of range 1..1000", r.Distinct)
		}
		window(24 * time.Hour)
		flagFor()
		attestLevel(r.MinAttest)
	case "one_ring":
		noLists()
		if r.Callees < 1 || r.Callees > 1000 {
			add("callees: %d out of range 1..1000", r.Callees)
		}
		if r.Percent < 1 || r.Percent > 100 {
			add("percent: %d out of range 1..100", r.Percent)
		}
		if r.RingMax < 100*time.Millisecond || r.RingMax > time.Minute {
			add("ring_max: %s out of range 100ms..1m", r.RingMax)
		}
		window(7 * 24 * time.Hour)
		flagFor()
	case "concurrent":
		noLists()
		if err := oneOf("key", r.Key, "customer", "source", "realm"); err != nil {
			errs = append(errs, err)
		}
		if r.Limit < 1 {
			add("limit: %d, want at least 1", r.Limit)
		}
		if r.MaxDuration < time.Minute || r.MaxDuration > 48*time.Hour {
			add("max_duration: %s out of range 1m..48h", r.MaxDuration)
		}
	case "callback":
		noLists()
	case "attestation":
		noLists()
		attestLevel(r.MinAttest)
	case "reputation":
		noLists()
		if err := oneOf("subject", r.Subject, "caller", "source"); err != nil {
			errs = append(errs, err)
		}
		if r.Limit < 1 {
			add("limit: %d, want at least 1", r.Limit)
		}
		window(30 * 24 * time.Hour)
	}
	return errs
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}
