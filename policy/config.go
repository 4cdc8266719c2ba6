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
	"path/filepath"
	"strings"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/sip/media"
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
	// Announce is the announcement of each realm's rejections whose rule
	// names none (realm name → announcement).
	Announce map[string]*AnnounceConfig `yaml:"announce"`

	// dir is the directory of the file, which prompt paths are relative to
	// (SetSource); "" for the working directory.
	dir string
}

// SetSource tells the file where it was read from: prompts are relative to
// its directory. The loader calls it before Validate.
func (f *File) SetSource(path string) { f.dir = filepath.Dir(path) }

// PromptFiles are the prompt files the file names, resolved as Validate
// reads them.
func (f *File) PromptFiles() []string {
	var out []string
	add := func(a *AnnounceConfig) {
		if a != nil && a.Prompt != "" {
			out = append(out, a.path(f.dir))
		}
	}
	for _, r := range f.Rules {
		add(r.Action.Announce)
	}
	for _, a := range f.Announce {
		add(a)
	}
	return out
}

// AnnounceConfig is what a rejected caller hears before the final response,
// as early media: a SIT sequence, then the prompt repeat times.
type AnnounceConfig struct {
	// Prompt is an 8 kHz mono WAV (16-bit PCM or G.711), relative to the
	// policy file; "" for the SIT alone.
	Prompt string `yaml:"prompt"`
	// SIT: intercept (default), vacant, reorder, no_circuit, none.
	SIT string `yaml:"sit"`
	// Repeat is how often the prompt plays (default 1).
	Repeat int `yaml:"repeat"`

	// audio is the announcement Validate loaded; nil for {sit: none} with
	// no prompt, which turns the realm's announcement off for a rule.
	audio *media.Announcement
}

// Audio is the loaded announcement (nil: none).
func (a *AnnounceConfig) Audio() *media.Announcement {
	if a == nil {
		return nil
	}
	return a.audio
}

// load reads the prompt and builds the announcement; errors start with the
// key that is wrong.
func (a *AnnounceConfig) load(dir string) error {
	sit := media.SIT(a.SIT)
	if _, err := sit.Segments(); err != nil {
		return fmt.Errorf("sit: %q is not one of intercept, vacant, reorder, no_circuit, none", a.SIT)
	}
	if a.Prompt == "" && sit == media.SITNone {
		a.audio = nil // plays nothing
		return nil
	}
	var prompt *media.Prompt
	if a.Prompt != "" {
		p, err := media.LoadPrompt(a.path(dir))
		if err != nil {
			return fmt.Errorf("prompt: %w", err)
		}
		prompt = p
	}
	audio, err := media.NewAnnouncement(sit, prompt, a.Repeat)
	if err != nil {
		key := "prompt"
		if a.Repeat < 1 || a.Repeat > media.MaxRepeat {
			key = "repeat"
		}
		return fmt.Errorf("%s: %w", key, err)
	}
	a.audio = audio
	return nil
}

// path is the prompt file relative to dir.
func (a *AnnounceConfig) path(dir string) string {
	if filepath.IsAbs(a.Prompt) || dir == "" {
		return a.Prompt
	}
	return filepath.Join(dir, a.Prompt)
}

func (a *AnnounceConfig) applyDefaults() {
	if a == nil {
		return
	}
	orDefault(&a.SIT, string(media.SITIntercept))
	orDefault(&a.Repeat, 1)
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
	// Managed lists are edited through the admin API (/api/v1/lists) and
	// kept in the call-record database, not in this file.
	Managed bool `yaml:"managed"`
}

// RuleConfig is one rule.
type RuleConfig struct {
	Name string `yaml:"name"`
	// Type is one of: list (allow, block or tag by list), dnc (Do-Not-Call
	// with consent), window (calling hours), rate (more than limit calls
	// per window for one key), concurrent (calls in progress per key),
	// bombing (one caller calling one callee more than each threshold
	// allows), protect (victim protection), one_ring (Wangiri callers),
	// callback (calls back to one-ring numbers), hygiene (caller-ID
	// checks), attestation (minimum verified attestation) or reputation
	// (607 complaints). Each is a ruleType in its rule_<type>.go.
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
	// recorded as a store_error hit. Only for the rule types that keep
	// state (configs/policy.yaml lists them).
	OnStoreError string `yaml:"on_store_error"`

	Action ActionConfig `yaml:"action"`
}

// storeErrorRetryAfter is the Retry-After (seconds) of the 503 a tag rule
// with on_store_error: closed rejects a call with when the store fails.
const storeErrorRetryAfter = 5

// Threshold is "more than Limit calls within Window".
type Threshold struct {
	Limit  int           `yaml:"limit"`
	Window time.Duration `yaml:"window"`
}

// MatchConfig narrows which calls a rule looks at; empty fields match all.
type MatchConfig struct {
	Realm     string   `yaml:"realm"`     // inside | outside
	Class     string   `yaml:"class"`     // a class of `classes`
	Customers []string `yaml:"customers"` // customer names
	Sources   []string `yaml:"sources"`   // source addresses or CIDRs (trunks)
}

// ActionConfig is what a rule does when it fires.
type ActionConfig struct {
	// Type: allow (list rules only: stop evaluating, let the call
	// through), reject, tag.
	Type string `yaml:"type"`
	// Reject: SIP code (default: the rule type's, configs/policy.yaml
	// lists them) and reason phrase (default: the code's own, e.g.
	// Service Unavailable, Busy Here, Decline; Rejected for a code
	// without one), and an optional Call-Info redress URI (608).
	Code     int    `yaml:"code"`
	Reason   string `yaml:"reason"`
	CallInfo string `yaml:"call_info"`
	// RetryAfter seconds on a rejection (rate rules default to the window).
	RetryAfter int `yaml:"retry_after"`
	// Announce: what the rejected caller hears first (early media), in
	// place of the realm's announcement; {sit: none} plays nothing.
	Announce *AnnounceConfig `yaml:"announce"`
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
	for _, a := range f.Announce {
		a.applyDefaults()
	}
	for i := range f.Rules {
		r := &f.Rules[i]
		orDefault(&r.Mode, "enforce")
		orDefault(&r.Number, "callee")
		code := 608 // an unknown type: Validate reports it
		if t := ruleTypes[r.Type]; t != nil {
			orDefault(&r.Match.Realm, t.realm)
			if t.defaults != nil {
				t.defaults(r)
			}
			if t.stateful {
				orDefault(&r.OnStoreError, "open")
			}
			code = t.code
		}
		r.Action.Announce.applyDefaults()
		if r.Action.Type == "reject" {
			orDefault(&r.Action.Code, code)
			if r.Action.Reason == "" {
				r.Action.Reason = reasonPhrases[r.Action.Code]
				orDefault(&r.Action.Reason, "Rejected")
			}
		}
	}
}

// reasonPhrases are the RFC 3261 / RFC 8197 / RFC 8688 phrases of the codes
// rules reject with; another code gets "Rejected".
var reasonPhrases = map[int]string{
	403: "Forbidden", 404: "Not Found", 433: "Anonymity Disallowed", 480: "Temporarily Unavailable",
	486: "Busy Here", 488: "Not Acceptable Here", 503: "Service Unavailable",
	603: "Decline", 607: "Unwanted", 608: "Rejected",
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
// are loaded by Compile, which reports their own file:line errors;
// announcement prompts are loaded here, so that a wrong WAV is reported at
// the line that names it.
func (f *File) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, e := range f.Emergency {
		if tn, ok := passport.Canonical(e); !ok || tn != e {
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
		switch {
		case l.Managed && (l.File != "" || len(l.Numbers) > 0):
			add(errors.New(p + "managed: a managed list has no file or numbers (the admin API edits it)"))
		case !l.Managed && (l.File == "") == (len(l.Numbers) == 0):
			add(errors.New(p + "file: give either file or numbers (or managed: true)"))
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
		t := ruleTypes[r.Type]
		if t == nil {
			add(oneOf(p+"type", r.Type, typeNames()...))
		}
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
		if r.Match.Class != "" {
			if _, ok := f.Classes[r.Match.Class]; !ok {
				add(fmt.Errorf("%smatch.class: %q is not in classes", p, r.Match.Class))
			}
		}
		if t != nil {
			for _, err := range t.check(&r) {
				add(fmt.Errorf("%s%w", p, err))
			}
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
		if a.RetryAfter < 0 || a.RetryAfter > 86400 {
			add(fmt.Errorf("%saction.retry_after: %d out of range 0..86400", p, a.RetryAfter))
		}
		if a.Announce != nil {
			if a.Type != "reject" {
				add(errors.New(p + "action.announce: only a reject action plays an announcement"))
			} else if err := f.Rules[i].Action.Announce.load(f.dir); err != nil {
				add(fmt.Errorf("%saction.announce.%w", p, err))
			}
		}
	}
	for realm, a := range f.Announce {
		switch {
		case realm != "inside" && realm != "outside":
			add(fmt.Errorf("announce.%s: not a realm (inside, outside)", realm))
		case a == nil:
			add(fmt.Errorf("announce.%s: empty", realm))
		default:
			if err := a.load(f.dir); err != nil {
				add(fmt.Errorf("announce.%s.%w", realm, err))
			}
		}
	}
	return errors.Join(errs...)
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
