package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// This file holds what several rule types share: building hits, list
// lookups, keys, sources and attestation levels. Each type is in its
// rule_<type>.go.

// hit is the rule's hit: what the call matched and the evidence.
func (r *rule) hit(matched, entry string) Hit {
	return Hit{Rule: r.Name, Mode: r.Mode, Action: r.Action.Type, Matched: matched, Entry: entry, typ: r.typ}
}

// hitf builds the rule's hit with a formatted entry.
func (r *rule) hitf(matched, format string, a ...any) Hit {
	return r.hit(matched, fmt.Sprintf(format, a...))
}

// verdict is what one rule made of one call.
type verdict struct {
	hit   Hit
	ok    bool // the rule fired, or its store failed: hit is set
	trips int  // store round trips the rule made after the stage's batch
}

// fired is the verdict of a rule that fired.
func fired(h Hit) verdict { return verdict{hit: h, ok: true} }

// storeError is the verdict of a store operation that failed: the hit
// always goes to the call record and the metrics; Evaluate applies
// on_store_error.
func (r *rule) storeError(matched, entry string, err error) verdict {
	return fired(r.storeErrorHit(matched, entry, err))
}

func (r *rule) storeErrorHit(matched, entry string, err error) Hit {
	h := r.hitf(matched, "%s on_store_error=%s error=%v", entry, r.OnStoreError, err)
	h.Action = ActionStoreError
	return h
}

// listed looks tn up in lists, in order, and returns the first list that
// holds it with the entry that matched (a prefix ends in "*"). An empty tn
// is on no list.
func listed(lists []lookupList, tn string, now time.Time) (list, entry string, ok bool) {
	if tn == "" {
		return "", "", false
	}
	for _, l := range lists {
		if m, ok := l.Lookup(tn, now); ok {
			entry = m.Entry
			if m.Prefix {
				entry += "*"
			}
			return l.Name(), entry, true
		}
	}
	return "", "", false
}

// keyValue is what a rate or concurrent rule counts the call under: its
// source address, caller, callee, customer or realm ("" when unknown).
func keyValue(key string, in Input) string {
	switch key {
	case "source":
		if in.Source.IsValid() {
			return in.Source.String()
		}
	case "caller":
		return in.Caller
	case "callee":
		return in.Callee
	case "customer":
		return in.Customer
	case "realm":
		return in.Realm
	}
	return ""
}

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
