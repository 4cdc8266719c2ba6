package passport

import (
	"errors"
	"strings"
	"testing"
)

// canonicalCases are the inputs on which the three canonicalisers stirgate
// had before this package disagreed (sip.Number took "++1..." and any
// number of digits; attest.Canonical and policy/numbers.Canonical did not),
// and the one answer every package now gets. sip and policy/numbers test
// their callers against the same expectations.
var canonicalCases = []struct {
	in, want string
	ok       bool
}{
	{"12025550100", "12025550100", true},
	{"+12025550100", "12025550100", true},
	{"+1 (202) 555-0100", "12025550100", true},
	{"+1.202.555.0100", "12025550100", true},
	{"(+1) 202", "1202", true}, // separators before the "+"
	{"0123", "0123", true},     // leading zeros are kept: 0123 and 123 differ
	{"7", "7", true},
	{"123456789012345", "123456789012345", true},
	{"+123456789012345", "123456789012345", true},
	{"++12025550100", "", false},    // sip.Number said 12025550100
	{"1234567890123456", "", false}, // 16 digits: sip.Number said yes
	{"+1234567890123456", "", false},
	{"12025550100123456789", "", false},
	{"+(+1)202", "", false},
	{"1+2", "", false},
	{"1-+2", "", false},
	{"", "", false},
	{"+", "", false},
	{"()- .", "", false},
	{"anonymous", "", false},
	{"12a", "", false},
	{"1\t2", "", false},
	{"1*", "", false},
	{"1;x", "", false},
	{"１２", "", false}, // fullwidth digits
}

func TestCanonical(t *testing.T) {
	for _, tt := range canonicalCases {
		got, ok := Canonical(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Canonical(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		var buf [MaxDigits]byte
		n, ok := Digits([]byte(tt.in), &buf)
		if ok != tt.ok || (ok && string(buf[:n]) != tt.want) {
			t.Errorf("Digits(%q) = %q, %v; want %q, %v", tt.in, buf[:n], ok, tt.want, tt.ok)
		}
		if IsTN(tt.in) != (tt.ok && tt.in == tt.want) {
			t.Errorf("IsTN(%q) = %v", tt.in, IsTN(tt.in))
		}
	}
}

func TestCanonicalDoesNotAllocateForCanonicalInput(t *testing.T) {
	for _, s := range []string{"12025550100", "+12025550100"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = Canonical(s) }); n != 0 {
			t.Errorf("Canonical(%q) allocates %v times", s, n)
		}
	}
}

func TestClaimsCheck(t *testing.T) {
	ok := Claims{Attest: LevelA, Orig: "12025550100", Dest: []string{"12025550199"}, IAT: 1700000000, OrigID: "x"}
	if err := ok.Check(); err != nil {
		t.Fatalf("valid claims: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Claims)
		want   string
	}{
		{"attest D", func(c *Claims) { c.Attest = "D" }, "attest"},
		{"attest empty", func(c *Claims) { c.Attest = "" }, "attest"},
		{"orig with +", func(c *Claims) { c.Orig = "+12025550100" }, "orig.tn"},
		{"orig 16 digits", func(c *Claims) { c.Orig = "1234567890123456" }, "orig.tn"},
		{"orig with a quote", func(c *Claims) { c.Orig = "1\"x" }, "orig.tn"},
		{"no dest", func(c *Claims) { c.Dest = nil }, "no dest.tn"},
		{"dest with a backslash", func(c *Claims) { c.Dest = []string{"12025550199", "2\\"} }, "dest.tn"},
		{"no origid", func(c *Claims) { c.OrigID = "" }, "origid"},
	}
	for _, tt := range tests {
		c := ok
		c.Dest = append([]string(nil), ok.Dest...)
		tt.mutate(&c)
		err := c.Check()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want ErrInvalid naming %s", tt.name, err, tt.want)
		}
	}
	long := ok
	long.Orig = strings.Repeat("x", 8192)
	if err := long.Check(); err == nil || len(err.Error()) > 200 {
		t.Errorf("a long bad orig.tn gives %d bytes of error", len(err.Error()))
	}
}

// reference is Canonical written from RFC 8224 8.3 the other way round:
// drop the visual separators, then one leading "+", and what is left must be
// 1 to 15 digits.
func reference(s string) (string, bool) {
	t := strings.Map(func(r rune) rune {
		if strings.ContainsRune("-.() ", r) {
			return -1
		}
		return r
	}, s)
	t = strings.TrimPrefix(t, "+")
	return t, IsTN(t)
}

// FuzzCanonical: Canonical never panics, agrees with the reference, with
// Digits on bytes and with IsTN, and is idempotent.
func FuzzCanonical(f *testing.F) {
	for _, tt := range canonicalCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := Canonical(s)
		want, wantOK := reference(s)
		if ok != wantOK || (ok && got != want) {
			t.Fatalf("Canonical(%q) = %q, %v; reference says %q, %v", s, got, ok, want, wantOK)
		}
		if !ok {
			if got != "" {
				t.Fatalf("Canonical(%q) refused but returned %q", s, got)
			}
			return
		}
		if !IsTN(got) {
			t.Fatalf("Canonical(%q) = %q is not IsTN", s, got)
		}
		if again, ok := Canonical(got); !ok || again != got {
			t.Fatalf("Canonical(Canonical(%q)) = %q, %v", s, again, ok)
		}
		var buf [MaxDigits]byte
		if n, ok := Digits([]byte(s), &buf); !ok || string(buf[:n]) != got {
			t.Fatalf("Digits(%q) = %q, %v; Canonical says %q", s, buf[:n], ok, got)
		}
		if IsTN(s) && got != s {
			t.Fatalf("IsTN(%q) but Canonical = %q", s, got)
		}
	})
}
