package attest

import (
	"fmt"
	"strings"
)

// Canonical returns a telephone number as PASSporT carries it (RFC 8224
// 8.3): digits only, visual separators and a leading "+" removed. ok is
// false when s is not a number.
func Canonical(s string) (tn string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+' && b.Len() == 0 && i == strings.IndexByte(s, '+'):
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		default:
			return "", false
		}
	}
	if b.Len() == 0 || b.Len() > 15 {
		return "", false
	}
	return b.String(), true
}

// numberRule is one entry of a customer's numbers.
type numberRule struct {
	exact, prefix string
	lo, hi        string // a range of same-length numbers
}

func parseNumberRule(s string) (numberRule, error) {
	if lo, hi, ok := strings.Cut(s, ".."); ok {
		a, okA := Canonical(lo)
		b, okB := Canonical(hi)
		if !okA || !okB || len(a) != len(b) || a > b {
			return numberRule{}, fmt.Errorf("%q is not a range of two numbers of the same length, low to high", s)
		}
		return numberRule{lo: a, hi: b}, nil
	}
	if p, ok := strings.CutSuffix(s, "*"); ok {
		c, ok := Canonical(p)
		if !ok {
			return numberRule{}, fmt.Errorf("%q is not a number prefix", s)
		}
		return numberRule{prefix: c}, nil
	}
	c, ok := Canonical(s)
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
