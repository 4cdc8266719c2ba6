// Package passport is what attest, verify, policy and sip must agree on
// about a SHAKEN PASSporT: the claims it carries (RFC 8225, RFC 8588) and
// the one canonical form of a telephone number (RFC 8224 8.3). It is a
// leaf: it imports nothing of ours, so every package may import it, and a
// number the SIP edge reads is the number the signer signs, the verifier
// compares and the policy lists look up.
package passport

import (
	"errors"
	"fmt"
)

// MaxDigits is the longest canonical number (E.164, ITU-T E.164 6.1).
const MaxDigits = 15

// Level is a SHAKEN attestation level (ATIS-1000074 5.2.3).
type Level string

const (
	LevelA Level = "A" // full: known customer, number it owns
	LevelB Level = "B" // partial: known customer, number not provably theirs
	LevelC Level = "C" // gateway: we know where the call entered, nothing more
)

// Valid reports whether l is A, B or C.
func (l Level) Valid() bool { return l == LevelA || l == LevelB || l == LevelC }

// Claims are what one SHAKEN PASSporT asserts (RFC 8225 5, RFC 8588 4-5).
// attest signs them, verify decodes them; both check them with Check.
type Claims struct {
	Attest Level
	Orig   string   // canonical calling number (orig.tn)
	Dest   []string // canonical called numbers (dest.tn)
	IAT    int64    // issued at, Unix seconds
	OrigID string   // origination identifier (RFC 8588 origid)
}

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("passport: invalid claims")

// Check reports the first claim a SHAKEN PASSporT may not carry: attest
// not A, B or C, orig.tn or a dest.tn not canonical (1 to 15 digits), no
// dest.tn, no origid. Whether origid must be a UUID is the signer's and the
// verifier's own choice.
func (c Claims) Check() error {
	if !c.Attest.Valid() {
		return fmt.Errorf("%w: attest %q is not A, B or C", ErrInvalid, clip(string(c.Attest)))
	}
	if !IsTN(c.Orig) {
		return fmt.Errorf("%w: orig.tn %q is not a telephone number", ErrInvalid, clip(c.Orig))
	}
	if len(c.Dest) == 0 {
		return fmt.Errorf("%w: no dest.tn", ErrInvalid)
	}
	for _, d := range c.Dest {
		if !IsTN(d) {
			return fmt.Errorf("%w: dest.tn %q is not a telephone number", ErrInvalid, clip(d))
		}
	}
	if c.OrigID == "" {
		return fmt.Errorf("%w: no origid", ErrInvalid)
	}
	return nil
}

// clip bounds attacker-supplied text in errors.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// IsTN reports whether s is already canonical: 1 to MaxDigits ASCII digits.
func IsTN(s string) bool {
	if s == "" || len(s) > MaxDigits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Canonical returns s as a canonical number (RFC 8224 8.3): its digits,
// with one leading "+" (before any digit) and the visual separators
// . - ( ) and space removed; 1 to MaxDigits digits. ok is false for
// anything else ("++1", "1+2", letters, 16 digits, no digit at all).
//
// It runs for every number of every INVITE: an input that is already
// canonical, or canonical after a leading "+", is returned without
// allocating.
func Canonical(s string) (tn string, ok bool) {
	var buf [MaxDigits]byte
	n, ok := Digits(s, &buf)
	switch {
	case !ok:
		return "", false
	case n == len(s):
		return s, true
	case n == len(s)-1 && s[0] == '+':
		return s[1:], true
	}
	return string(buf[:n]), true
}

// Digits is Canonical without the allocation, for callers that read many
// numbers (list loaders): it writes the digits of s to buf and returns how
// many there are; ok is false when Canonical would refuse s.
func Digits[S ~string | ~[]byte](s S, buf *[MaxDigits]byte) (n int, ok bool) {
	plus := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n == MaxDigits {
				return 0, false
			}
			buf[n] = c
			n++
		case c == '+' && n == 0 && !plus:
			plus = true
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		default:
			return 0, false
		}
	}
	return n, n > 0
}
