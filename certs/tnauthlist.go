package certs

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// OIDTNAuthList is id-pe-TNAuthList (RFC 8226): 1.3.6.1.5.5.7.1.26.
var OIDTNAuthList = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 26}

// TNAuthList is the TN Authorization List of RFC 8226 §9:
//
//	TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
//	TNEntry ::= CHOICE {
//	  spc   [0] ServiceProviderCode,
//	  range [1] TelephoneNumberRange,
//	  one   [2] TelephoneNumber }
//	ServiceProviderCode ::= IA5String
//	TelephoneNumberRange ::= SEQUENCE {
//	  start TelephoneNumber,
//	  count INTEGER (2..MAX),
//	  ... }
//	TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*"))
//
// The module is DEFINITIONS EXPLICIT TAGS, so every choice is an explicit
// (constructed) context tag around the universal type: an SPC "996H" is
// 30 08 A0 06 16 04 39 39 36 48, as the STI-PA's certificates carry it.
//
// Entries are kept by kind; Encode writes SPCs, then ranges, then TNs.
type TNAuthList struct {
	SPCs   []string
	Ranges []TNRange // TelephoneNumberRange {start, count}
	TNs    []string  // TelephoneNumber (digits, IA5String, 1..15 chars of 0-9 # *)
}

// TNRange is a TelephoneNumberRange: the Count numbers Start..Start+Count-1,
// all of Start's length.
type TNRange struct {
	Start string
	Count int
}

// DER tags used by the TNAuthList.
const (
	tagInteger  = 0x02
	tagIA5      = 0x16
	tagSequence = 0x30 // universal 16, constructed
	tagSPC      = 0xA0 // [0] EXPLICIT (context, constructed)
	tagRange    = 0xA1 // [1] EXPLICIT
	tagOne      = 0xA2 // [2] EXPLICIT
)

// Empty reports whether the list has no entries at all.
func (l TNAuthList) Empty() bool {
	return len(l.SPCs) == 0 && len(l.Ranges) == 0 && len(l.TNs) == 0
}

// String is a short human form: "spc:TEST01 range:12025550100+100 tn:12025550199".
func (l TNAuthList) String() string {
	var parts []string
	for _, s := range l.SPCs {
		parts = append(parts, "spc:"+s)
	}
	for _, r := range l.Ranges {
		parts = append(parts, "range:"+r.Start+"+"+strconv.Itoa(r.Count))
	}
	for _, t := range l.TNs {
		parts = append(parts, "tn:"+t)
	}
	return strings.Join(parts, " ")
}

// Encode returns the DER encoding of the list (the extension value). It
// refuses an empty list, an empty or non-printable SPC, a TN that is not 1..15
// characters of 0-9 # *, and a range whose count is below 2.
func (l TNAuthList) Encode() ([]byte, error) {
	if l.Empty() {
		return nil, fmt.Errorf("certs: encode TNAuthList: %w", ErrEmptyTNAuth)
	}
	var body []byte
	for _, s := range l.SPCs {
		if err := checkSPC(s); err != nil {
			return nil, fmt.Errorf("certs: encode TNAuthList: %w", err)
		}
		body = appendTLV(body, tagSPC, appendTLV(nil, tagIA5, []byte(s)))
	}
	for _, r := range l.Ranges {
		if err := checkRange(r.Start, r.Count); err != nil {
			return nil, fmt.Errorf("certs: encode TNAuthList: %w", err)
		}
		seq := appendTLV(nil, tagIA5, []byte(r.Start))
		seq = appendTLV(seq, tagInteger, encodeInt(uint64(r.Count)))
		body = appendTLV(body, tagRange, appendTLV(nil, tagSequence, seq))
	}
	for _, t := range l.TNs {
		if err := checkTN(t); err != nil {
			return nil, fmt.Errorf("certs: encode TNAuthList: %w", err)
		}
		body = appendTLV(body, tagOne, appendTLV(nil, tagIA5, []byte(t)))
	}
	return appendTLV(nil, tagSequence, body), nil
}

// ParseTNAuthList decodes a DER TNAuthorizationList strictly: one SEQUENCE
// with no trailing data, at least one entry, explicit context tags [0] [1]
// [2] around IA5Strings (implicitly tagged entries are refused), valid
// characters, count >= 2, minimal DER lengths and integers. Extension
// additions inside a TelephoneNumberRange (its "...") are skipped when they
// are well-formed. It never panics.
func ParseTNAuthList(der []byte) (TNAuthList, error) {
	var l TNAuthList
	tag, body, rest, err := readTLV(der)
	if err != nil {
		return l, badList("%w", err)
	}
	if tag != tagSequence {
		return l, badList("want SEQUENCE (0x30), got tag 0x%02x", tag)
	}
	if len(rest) != 0 {
		return l, badList("%d bytes of trailing data", len(rest))
	}
	if len(body) == 0 {
		return l, fmt.Errorf("certs: %w: %w", ErrBadTNAuthList, ErrEmptyTNAuth)
	}
	for i := 0; len(body) > 0; i++ {
		var content []byte
		tag, content, body, err = readTLV(body)
		if err != nil {
			return TNAuthList{}, badList("entry %d: %w", i, err)
		}
		switch tag {
		case tagSPC:
			s, err := explicitIA5(content)
			if err != nil {
				return TNAuthList{}, badList("entry %d (spc): %w", i, err)
			}
			if err := checkSPC(s); err != nil {
				return TNAuthList{}, badList("entry %d (spc): %w", i, err)
			}
			l.SPCs = append(l.SPCs, s)
		case tagRange:
			r, err := parseRange(content)
			if err != nil {
				return TNAuthList{}, badList("entry %d (range): %w", i, err)
			}
			l.Ranges = append(l.Ranges, r)
		case tagOne:
			s, err := explicitIA5(content)
			if err != nil {
				return TNAuthList{}, badList("entry %d (one): %w", i, err)
			}
			if err := checkTN(s); err != nil {
				return TNAuthList{}, badList("entry %d (one): %w", i, err)
			}
			l.TNs = append(l.TNs, s)
		case 0x80, 0x81, 0x82:
			return TNAuthList{}, badList("entry %d: implicit context tag 0x%02x (RFC 8226 uses EXPLICIT TAGS: want 0x%02x)", i, tag, tag|0x20)
		default:
			return TNAuthList{}, badList("entry %d: unexpected tag 0x%02x (want [0] spc, [1] range or [2] one)", i, tag)
		}
	}
	return l, nil
}

// TNAuthListOf returns the parsed TNAuthList extension of c. It is an error
// when the extension is absent, present twice, or malformed.
func TNAuthListOf(c *x509.Certificate) (TNAuthList, error) {
	if c == nil {
		return TNAuthList{}, fmt.Errorf("certs: %w (nil certificate)", ErrNoTNAuthList)
	}
	var found *[]byte
	for i := range c.Extensions {
		if c.Extensions[i].Id.Equal(OIDTNAuthList) {
			if found != nil {
				return TNAuthList{}, fmt.Errorf("certs: %w: extension present twice", ErrBadTNAuthList)
			}
			found = &c.Extensions[i].Value
		}
	}
	if found == nil {
		return TNAuthList{}, fmt.Errorf("certs: %q: %w", c.Subject.CommonName, ErrNoTNAuthList)
	}
	return ParseTNAuthList(*found)
}

// Covers reports whether the list authorises the telephone number tn (a
// leading "+" is ignored). A list with no TNs and no ranges (an SPC-only
// certificate, the SHAKEN norm) covers every number. Otherwise tn must be
// listed exactly or fall inside a range: same length as the range's start,
// numerically within start..start+count-1 (ranges with # or * in their start
// cover nothing).
func (l TNAuthList) Covers(tn string) bool {
	if len(l.TNs) == 0 && len(l.Ranges) == 0 {
		return true
	}
	tn = strings.TrimPrefix(tn, "+")
	if checkTN(tn) != nil {
		return false
	}
	for _, t := range l.TNs {
		if t == tn {
			return true
		}
	}
	v, ok := digitsValue(tn)
	if !ok {
		return false
	}
	for _, r := range l.Ranges {
		if len(r.Start) != len(tn) || r.Count < 1 {
			continue
		}
		s, ok := digitsValue(r.Start)
		if !ok {
			continue
		}
		if v >= s && v-s < uint64(r.Count) {
			return true
		}
	}
	return false
}

// AppendTNSpec adds one entry written the way an operator types it:
//
//	12025550100              one number ("one")
//	1202555xxxx              a prefix: trailing x's become a range of 10^n
//	12025550100-12025550199  an inclusive range of numbers of equal length
//
// A leading "+" is ignored.
func AppendTNSpec(l TNAuthList, spec string) (TNAuthList, error) {
	s := strings.TrimPrefix(strings.TrimSpace(spec), "+")
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, okA := digitsValue(lo)
		b, okB := digitsValue(hi)
		if !okA || !okB || len(lo) != len(hi) || len(lo) > 15 || b <= a {
			return l, fmt.Errorf("certs: TN range %q: %w (want START-END, digits of equal length, END > START)", spec, ErrBadRange)
		}
		if b-a+1 > math.MaxInt32 {
			return l, fmt.Errorf("certs: TN range %q: %w (too large)", spec, ErrBadRange)
		}
		l.Ranges = append(l.Ranges, TNRange{Start: lo, Count: int(b - a + 1)})
		return l, nil
	}
	trimmed := strings.TrimRight(s, "xX")
	if n := len(s) - len(trimmed); n > 0 {
		if n > 9 || len(s) > 15 {
			return l, fmt.Errorf("certs: TN prefix %q: %w (at most 9 x's, 15 characters)", spec, ErrBadRange)
		}
		if _, ok := digitsValue(trimmed); !ok {
			return l, fmt.Errorf("certs: TN prefix %q: %w (digits then x's)", spec, ErrBadRange)
		}
		l.Ranges = append(l.Ranges, TNRange{Start: trimmed + strings.Repeat("0", n), Count: pow10(n)})
		return l, nil
	}
	if err := checkTN(s); err != nil {
		return l, fmt.Errorf("certs: TN %q: %w", spec, err)
	}
	l.TNs = append(l.TNs, s)
	return l, nil
}

func pow10(n int) int {
	p := 1
	for range n {
		p *= 10
	}
	return p
}

// badList wraps ErrBadTNAuthList; format may itself use %w.
func badList(format string, args ...any) error {
	return fmt.Errorf("certs: %w: %w", ErrBadTNAuthList, fmt.Errorf(format, args...))
}

// checkTN enforces TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*")).
func checkTN(s string) error {
	if len(s) < 1 || len(s) > 15 {
		return fmt.Errorf("%w: %d characters (want 1..15)", ErrBadTN, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && c != '#' && c != '*' {
			return fmt.Errorf("%w: character %q at %d (want 0-9 # *)", ErrBadTN, c, i)
		}
	}
	return nil
}

// checkSPC: ServiceProviderCode ::= IA5String. We also refuse empty codes
// and anything outside printable, non-space ASCII (the SHAKEN SPC is an OCN
// or similar: letters and digits).
func checkSPC(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadSPC)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: byte 0x%02x at %d (want printable ASCII)", ErrBadSPC, c, i)
		}
	}
	return nil
}

func checkRange(start string, count int) error {
	if err := checkTN(start); err != nil {
		return fmt.Errorf("%w: start: %w", ErrBadRange, err)
	}
	if count < 2 {
		return fmt.Errorf("%w: count %d (want >= 2)", ErrBadRange, count)
	}
	return nil
}

func digitsValue(s string) (uint64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// explicitIA5 reads the content of an explicit context tag: exactly one
// primitive IA5String.
func explicitIA5(content []byte) (string, error) {
	tag, s, rest, err := readTLV(content)
	if err != nil {
		return "", err
	}
	if tag != tagIA5 {
		return "", fmt.Errorf("want IA5String (0x16), got tag 0x%02x", tag)
	}
	if len(rest) != 0 {
		return "", fmt.Errorf("%d bytes after the IA5String", len(rest))
	}
	for _, c := range s {
		if c > 0x7f {
			return "", fmt.Errorf("IA5String has non-ASCII byte 0x%02x", c)
		}
	}
	return string(s), nil
}

func parseRange(content []byte) (TNRange, error) {
	tag, seq, rest, err := readTLV(content)
	if err != nil {
		return TNRange{}, err
	}
	if tag != tagSequence || len(rest) != 0 {
		return TNRange{}, fmt.Errorf("want one SEQUENCE inside [1], got tag 0x%02x and %d trailing bytes", tag, len(rest))
	}
	tag, startB, seq, err := readTLV(seq)
	if err != nil {
		return TNRange{}, fmt.Errorf("start: %w", err)
	}
	if tag != tagIA5 {
		return TNRange{}, fmt.Errorf("start: want IA5String, got tag 0x%02x", tag)
	}
	tag, countB, seq, err := readTLV(seq)
	if err != nil {
		return TNRange{}, fmt.Errorf("count: %w", err)
	}
	if tag != tagInteger {
		return TNRange{}, fmt.Errorf("count: want INTEGER, got tag 0x%02x", tag)
	}
	count, err := parseCount(countB)
	if err != nil {
		return TNRange{}, fmt.Errorf("%w: count: %w", ErrBadRange, err)
	}
	// Extension additions ("..."): skip them, but only when well-formed.
	for len(seq) > 0 {
		if _, _, seq, err = readTLV(seq); err != nil {
			return TNRange{}, fmt.Errorf("range extension: %w", err)
		}
	}
	start := string(startB)
	if err := checkRange(start, count); err != nil {
		return TNRange{}, err
	}
	return TNRange{Start: start, Count: count}, nil
}

// parseCount decodes a DER INTEGER that must be positive and fit an int.
func parseCount(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("empty INTEGER")
	}
	if len(b) > 1 && ((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0)) {
		return 0, fmt.Errorf("non-minimal INTEGER")
	}
	if b[0]&0x80 != 0 {
		return 0, fmt.Errorf("negative count")
	}
	if b[0] == 0 {
		b = b[1:]
	}
	if len(b) > 8 {
		return 0, fmt.Errorf("count too large")
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	if v > math.MaxInt {
		return 0, fmt.Errorf("count too large")
	}
	return int(v), nil
}

func encodeInt(v uint64) []byte {
	var b []byte
	for {
		b = append([]byte{byte(v)}, b...)
		v >>= 8
		if v == 0 {
			break
		}
	}
	if b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}

// readTLV reads one DER element: low-tag-number form only, definite minimal
// lengths. It returns the identifier octet, the contents and what follows.
func readTLV(b []byte) (tag byte, content, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, fmt.Errorf("truncated element")
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, fmt.Errorf("high tag number form not expected")
	}
	l := uint64(b[1])
	b = b[2:]
	if l&0x80 != 0 {
		n := int(l & 0x7f)
		switch {
		case n == 0:
			return 0, nil, nil, fmt.Errorf("indefinite length not allowed in DER")
		case n > 4:
			return 0, nil, nil, fmt.Errorf("length of %d octets too large", n)
		case len(b) < n:
			return 0, nil, nil, fmt.Errorf("truncated length")
		case b[0] == 0:
			return 0, nil, nil, fmt.Errorf("non-minimal length")
		}
		l = 0
		for _, c := range b[:n] {
			l = l<<8 | uint64(c)
		}
		if l < 0x80 {
			return 0, nil, nil, fmt.Errorf("non-minimal length")
		}
		b = b[n:]
	}
	if l > uint64(len(b)) {
		return 0, nil, nil, fmt.Errorf("length %d exceeds the %d bytes left", l, len(b))
	}
	return tag, b[:l], b[l:], nil
}

func appendTLV(dst []byte, tag byte, content []byte) []byte {
	dst = append(dst, tag)
	n := len(content)
	switch {
	case n < 0x80:
		dst = append(dst, byte(n))
	case n <= 0xff:
		dst = append(dst, 0x81, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		dst = append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, content...)
}
