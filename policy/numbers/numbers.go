// Package numbers holds the telephone-number lists the policy engine
// consults: Do-Not-Call registries, consent and existing-relationship lists
// (with expiry dates), allow and block lists, emergency numbers.
//
// Numbers are canonical per RFC 8224 8.3, as passport.Canonical makes them:
// digit strings of 1 to 15 digits (E.164 without the "+"). A list entry is an exact number or a prefix. A
// List is built once (by a Builder or a loader) and is then immutable and
// safe for concurrent readers; Lookup does not allocate.
//
// Representation: entries are kept per digit length (1..15), so "0123" and
// "123" are different numbers. The numeric value of a length's entries is
// split into a 32-bit high half, kept once per group of entries sharing it,
// and a 32-bit low half, kept per entry in a sorted []uint32. A lookup is a
// binary search of the (few) high halves, then one in a bucket of about four
// low halves that a per-group directory finds. For 10- and 11-digit national
// numbers that is about 5.5 bytes per entry. Expiries are kept only for the
// entries that have one (8 bytes each), found through a bitmap
// with a rank index (0.2 bytes per entry, only in tables that have expiries).
package numbers

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
)

// MaxDigits is the longest canonical number (E.164).
const MaxDigits = passport.MaxDigits

// never is the internal expiry of an entry that does not expire.
const never = math.MaxInt64

// value packs canonical digits into an integer; with the length it
// identifies the number.
func value(d []byte) uint64 {
	var v uint64
	for _, c := range d {
		v = v*10 + uint64(c-'0')
	}
	return v
}

// Match says which entry of a list a number matched, for the call record.
type Match struct {
	Entry   string    // the exact number, or the prefix (digits, without "*")
	Prefix  bool      // Entry is a prefix
	Expires time.Time // when the entry stops matching; zero when it never does
}

// List is an immutable set of numbers and prefixes. The zero List is empty.
type List struct {
	name   string
	exact  [MaxDigits + 1]table // by length
	prefix [MaxDigits + 1]table // by length
	pmask  uint16               // bit L set when prefix[L] is not empty
	n      int
}

// table holds the entries of one length, sorted by value. A value is split
// into a high half (v>>32), kept once per group of values sharing it, and a
// low half kept per entry; each group has a small directory on the top bits
// of the low half, so a lookup is a short binary search in a bucket of about
// four entries rather than a search of the whole table.
type table struct {
	his    []uint32 // distinct high halves, ascending
	gbits  []uint8  // per group: bits of the low half its directory uses
	gdir   []uint32 // per group: offset of its directory in dir
	dir    []uint32 // per group, 2^bits+1 bucket starts (indexes into los)
	los    []uint32 // low halves, ascending within a group
	hasExp []uint64 // bitmap over los: the entry has an expiry (nil: none has)
	rank   []uint32 // rank[w]: set bits of hasExp before word w
	expAt  []int64  // expiries (Unix seconds) of the entries with a bit, in order
}

// find returns the index of v in the table.
func (t *table) find(v uint64) (int, bool) {
	if len(t.los) == 0 {
		return 0, false
	}
	g, ok := slices.BinarySearch(t.his, uint32(v>>32))
	if !ok {
		return 0, false
	}
	lo := uint32(v)
	d := t.gdir[g] + lo>>(32-uint(t.gbits[g])) // lo>>32 is 0 in Go
	s, e := t.dir[d], t.dir[d+1]
	i, ok := slices.BinarySearch(t.los[s:e], lo)
	return int(s) + i, ok
}

// expiry returns the expiry of entry i (never when it has none).
func (t *table) expiry(i int) int64 {
	if t.hasExp == nil {
		return never
	}
	w, bit := i>>6, uint64(1)<<(i&63)
	if t.hasExp[w]&bit == 0 {
		return never
	}
	return t.expAt[int(t.rank[w])+bits.OnesCount64(t.hasExp[w]&(bit-1))]
}

// live looks v up and reports whether it is present and not expired at now
// (Unix seconds), with its expiry.
func (t *table) live(v uint64, now int64) (int64, bool) {
	i, ok := t.find(v)
	if !ok {
		return 0, false
	}
	exp := t.expiry(i)
	return exp, now < exp
}

// Name is the name the list was built with.
func (l *List) Name() string { return l.name }

// Len is the number of entries (exact numbers plus prefixes, duplicates
// merged), including any that have expired since the list was built.
func (l *List) Len() int { return l.n }

// Lookup reports whether the canonical number tn is listed at now: by an
// exact entry, else by the longest matching prefix, counting only entries
// that have not expired (an expired exact entry or prefix does not hide a
// shorter live prefix). A prefix matches the numbers that start with it,
// itself included. A leading "+" on tn is ignored; any other non-digit, or
// a length outside 1..15, is not listed. Lookup does not allocate.
func (l *List) Lookup(tn string, now time.Time) (Match, bool) {
	if len(tn) > 0 && tn[0] == '+' {
		tn = tn[1:]
	}
	n := len(tn)
	if n == 0 || n > MaxDigits {
		return Match{}, false
	}
	var pv [MaxDigits + 1]uint64 // pv[L] is the value of tn[:L]
	var v uint64
	for i := 0; i < n; i++ {
		c := tn[i]
		if c < '0' || c > '9' {
			return Match{}, false
		}
		v = v*10 + uint64(c-'0')
		pv[i+1] = v
	}
	at := now.Unix()
	if exp, ok := l.exact[n].live(v, at); ok {
		return Match{Entry: tn, Expires: expTime(exp)}, true
	}
	for L := n; L >= 1; L-- {
		if l.pmask&(1<<L) == 0 {
			continue
		}
		if exp, ok := l.prefix[L].live(pv[L], at); ok {
			return Match{Entry: tn[:L], Prefix: true, Expires: expTime(exp)}, true
		}
	}
	return Match{}, false
}

func expTime(exp int64) time.Time {
	if exp == never {
		return time.Time{}
	}
	return time.Unix(exp, 0).UTC()
}

// expSeconds is the internal expiry of t: never for the zero time, else t
// in Unix seconds rounded up (an entry never stops matching early).
func expSeconds(t time.Time) int64 {
	if t.IsZero() {
		return never
	}
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// Builder collects entries for a List. It is not safe for concurrent use.
type Builder struct {
	name   string
	exact  [MaxDigits + 1][]entry
	prefix [MaxDigits + 1][]entry
}

type entry struct {
	v   uint64
	exp int64
}

// NewBuilder starts an empty list called name.
func NewBuilder(name string) *Builder { return &Builder{name: name} }

// AddNumber adds the exact number tn (in any form passport.Canonical accepts), listed
// until expires; the zero time means it never expires. When a number is
// added more than once, the latest expiry wins (never beats any date).
func (b *Builder) AddNumber(tn string, expires time.Time) error {
	return b.add(tn, false, expires)
}

// AddPrefix adds prefix (digits in any form passport.Canonical accepts, without "*"):
// every number that starts with it is listed until expires. Duplicates
// merge as for AddNumber.
func (b *Builder) AddPrefix(prefix string, expires time.Time) error {
	return b.add(prefix, true, expires)
}

func (b *Builder) add(s string, isPrefix bool, expires time.Time) error {
	var buf [MaxDigits]byte
	n, ok := passport.Digits(s, &buf)
	if !ok {
		return fmt.Errorf("numbers: %q: %w", s, ErrNotNumber)
	}
	b.addDigits(buf[:n], isPrefix, expSeconds(expires))
	return nil
}

func (b *Builder) addDigits(d []byte, isPrefix bool, exp int64) {
	e := entry{v: value(d), exp: exp}
	if isPrefix {
		b.prefix[len(d)] = append(b.prefix[len(d)], e)
	} else {
		b.exact[len(d)] = append(b.exact[len(d)], e)
	}
}

// Build returns the list of the entries added so far and resets the
// Builder to empty (it hands its memory to the List).
func (b *Builder) Build() *List {
	l := &List{name: b.name}
	for L := 1; L <= MaxDigits; L++ {
		l.exact[L] = buildTable(b.exact[L])
		l.prefix[L] = buildTable(b.prefix[L])
		if len(l.prefix[L].los) > 0 {
			l.pmask |= 1 << L
		}
		l.n += len(l.exact[L].los) + len(l.prefix[L].los)
	}
	*b = Builder{name: b.name}
	return l
}

// buildTable sorts es, merges duplicates (keeping the latest expiry) and
// packs them. A single length holds at most 10^15 values, but a table is
// limited to 2^32 entries by its uint32 indexes; far beyond any registry.
func buildTable(es []entry) table {
	if len(es) == 0 {
		return table{}
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.v, b.v) })
	w := 0
	for _, e := range es[1:] {
		if e.v == es[w].v {
			es[w].exp = max(es[w].exp, e.exp)
			continue
		}
		w++
		es[w] = e
	}
	es = es[:w+1]
	if len(es) > math.MaxUint32 {
		panic("numbers: more than 2^32 entries of one length") // unreachable in practice
	}
	t := table{los: make([]uint32, len(es))}
	nexp := 0
	for _, e := range es {
		if e.exp != never {
			nexp++
		}
	}
	if nexp > 0 {
		t.hasExp = make([]uint64, (len(es)+63)/64)
		t.rank = make([]uint32, len(t.hasExp))
		t.expAt = make([]int64, 0, nexp)
	}
	for i, e := range es {
		t.los[i] = uint32(e.v)
		if e.exp != never {
			t.hasExp[i>>6] |= 1 << (i & 63)
			t.expAt = append(t.expAt, e.exp)
		}
	}
	for w := 1; w < len(t.rank); w++ {
		t.rank[w] = t.rank[w-1] + uint32(bits.OnesCount64(t.hasExp[w-1]))
	}
	for s := 0; s < len(es); {
		hi := uint32(es[s].v >> 32)
		e := s + 1
		for e < len(es) && uint32(es[e].v>>32) == hi {
			e++
		}
		// About four entries per bucket: 2^nb >= (e-s)/4.
		nb := 0
		for nb < 24 && 4<<nb < e-s {
			nb++
		}
		t.his = append(t.his, hi)
		t.gbits = append(t.gbits, uint8(nb))
		t.gdir = append(t.gdir, uint32(len(t.dir)))
		j := s
		for b := 0; b < 1<<nb; b++ {
			t.dir = append(t.dir, uint32(j))
			for j < e && t.los[j]>>(32-uint(nb)) == uint32(b) {
				j++
			}
		}
		t.dir = append(t.dir, uint32(e))
		s = e
	}
	t.his = slices.Clip(t.his)
	t.gbits = slices.Clip(t.gbits)
	t.gdir = slices.Clip(t.gdir)
	t.dir = slices.Clip(t.dir)
	return t
}
