package attest

import (
	"fmt"
	"strings"

	"github.com/stirgate/stirgate/attest/passport"
)

// numberRule is one entry of a customer's numbers.
type numberRule struct {
	exact, prefix string
	lo, hi        string // a range of same-length numbers
}

func parseNumberRule(s string) (numberRule, error) {
	if lo, hi, ok := strings.Cut(s, ".."); ok {
		a, okA := passport.Canonical(lo)
		b, okB := passport.Canonical(hi)
		if !okA || !okB || len(a) != len(b) || a > b {
			return numberRule{}, fmt.Errorf("%q is not a range of two numbers of the same length, low to high", s)
		}
		return numberRule{lo: a, hi: b}, nil
	}
	if p, ok := strings.CutSuffix(s, "*"); ok {
		c, ok := passport.Canonical(p)
		if !ok {
			return numberRule{}, fmt.Errorf("%q is not a number prefix", s)
		}
		return numberRule{prefix: c}, nil
	}
	c, ok := passport.Canonical(s)
	if !ok {
		return numberRule{}, fmt.Errorf("%q is not a number, a prefix ending in * or a range low..high", s)
	}
	return numberRule{exact: c}, nil
}

// numberSet answers "is this number ours" for one customer.
type numberSet struct {
	exact    map[string]bool
	prefixes []string
	ranges   []numberRule
}

func newNumberSet(rules []string) (numberSet, error) {
	ns := numberSet{exact: map[string]bool{}}
	for _, r := range rules {
		nr, err := parseNumberRule(r)
		if err != nil {
			return ns, err
		}
		switch {
		case nr.exact != "":
			ns.exact[nr.exact] = true
		case nr.prefix != "":
			ns.prefixes = append(ns.prefixes, nr.prefix)
		default:
			ns.ranges = append(ns.ranges, nr)
		}
	}
	return ns, nil
}

// has reports whether the canonical number tn is in the set.
func (ns numberSet) has(tn string) bool {
	if ns.exact[tn] {
		return true
	}
	for _, p := range ns.prefixes {
		if strings.HasPrefix(tn, p) {
			return true
		}
	}
	for _, r := range ns.ranges {
		if len(tn) == len(r.lo) && tn >= r.lo && tn <= r.hi {
			return true
		}
	}
	return false
}
