package numbers

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	t0   = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	day  = 24 * time.Hour
	zero time.Time
)

type add struct {
	s       string
	prefix  bool
	expires time.Time
}

func build(t testing.TB, adds ...add) *List {
	t.Helper()
	b := NewBuilder("test")
	for _, a := range adds {
		f := b.AddNumber
		if a.prefix {
			f = b.AddPrefix
		}
		if err := f(a.s, a.expires); err != nil {
			t.Fatalf("add %q: %v", a.s, err)
		}
	}
	return b.Build()
}

func TestLookup(t *testing.T) {
	list := build(t,
		add{s: "12025550100"},
		add{s: "+1 202 555 0101", expires: t0.Add(day)},
		add{s: "1202", prefix: true},
		add{s: "1202555", prefix: true},
		add{s: "1202556", prefix: true, expires: t0}, // expired at t0
		add{s: "1303", prefix: true, expires: t0.Add(time.Hour)},
		add{s: "0123"},
		add{s: "44", prefix: true},
		add{s: "4420", prefix: true, expires: t0.Add(-time.Second)},
		add{s: "5"},
		add{s: "123456789012345"},
		add{s: "9", prefix: true},
		add{s: "999999999999999", prefix: true},
		add{s: "18005550000", expires: t0.Add(-day)}, // expired exact,
		add{s: "1800", prefix: true},                 // falls back to a live prefix
	)
	tests := []struct {
		tn   string
		at   time.Time
		ok   bool
		want Match
	}{
		{"12025550100", t0, true, Match{Entry: "12025550100"}},                       // exact beats prefixes
		{"+12025550100", t0, true, Match{Entry: "12025550100"}},                      // leading + ignored
		{"12025550102", t0, true, Match{Entry: "1202555", Prefix: true}},             // longest prefix
		{"12024440000", t0, true, Match{Entry: "1202", Prefix: true}},                // shorter prefix
		{"1202", t0, true, Match{Entry: "1202", Prefix: true}},                       // a prefix matches itself
		{"120", t0, false, Match{}},                                                  // shorter than any entry
		{"12025550101", t0, true, Match{Entry: "12025550101", Expires: t0.Add(day)}}, // live consent
		{"12025550101", t0.Add(day), true, Match{Entry: "1202555", Prefix: true}},    // expired: prefix still lists it
		{"12025560000", t0.Add(-time.Second), true, Match{Entry: "1202556", Prefix: true, Expires: t0}},
		{"12025560000", t0, true, Match{Entry: "1202", Prefix: true}}, // 1202556 expired at t0
		{"13035550100", t0, true, Match{Entry: "1303", Prefix: true, Expires: t0.Add(time.Hour)}},
		{"13035550100", t0.Add(time.Hour), false, Match{}},
		{"0123", t0, true, Match{Entry: "0123"}}, // leading zero
		{"123", t0, false, Match{}},              // "123" is not "0123"
		{"00123", t0, false, Match{}},
		{"442071234567", t0, true, Match{Entry: "44", Prefix: true}},   // 4420 expired
		{"5", t0, true, Match{Entry: "5"}},                             // length 1
		{"55", t0, false, Match{}},                                     // exact 5 is no prefix
		{"123456789012345", t0, true, Match{Entry: "123456789012345"}}, // length 15
		{"12345678901234", t0, false, Match{}},
		{"999999999999999", t0, true, Match{Entry: "999999999999999", Prefix: true}}, // 15-digit prefix
		{"999999999999998", t0, true, Match{Entry: "9", Prefix: true}},
		{"18005550000", t0, true, Match{Entry: "1800", Prefix: true}},
		{"1234567890123456", t0, false, Match{}}, // too long
		{"", t0, false, Match{}},
		{"+", t0, false, Match{}},
		{"1202-555-0100", t0, false, Match{}}, // not canonical
		{"1202555010a", t0, false, Match{}},
	}
	for _, tt := range tests {
		got, ok := list.Lookup(tt.tn, tt.at)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Lookup(%q, %v) = %+v, %v; want %+v, %v", tt.tn, tt.at, got, ok, tt.want, tt.ok)
		}
	}
	if got, want := list.Len(), 15; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
}

func TestEmptyList(t *testing.T) {
	for _, l := range []*List{NewBuilder("empty").Build(), {}} {
		if m, ok := l.Lookup("12025550100", t0); ok {
			t.Errorf("empty list matched %+v", m)
		}
		if l.Len() != 0 {
			t.Errorf("Len = %d", l.Len())
		}
	}
	l, err := LoadReader("empty", strings.NewReader("# nothing\n\n   \n"), LoadOptions{})
	if err != nil || l.Len() != 0 || l.Name() != "empty" {
		t.Fatalf("LoadReader = %v, %v", l, err)
	}
}

func TestDuplicatesKeepLatestExpiry(t *testing.T) {
	tests := []struct {
		name string
		adds []add
		want time.Time // Expires of the merged entry
	}{
		{"later date wins", []add{{s: "123", expires: t0}, {s: "123", expires: t0.Add(day)}, {s: "123", expires: t0.Add(-day)}}, t0.Add(day)},
		{"never beats a date", []add{{s: "123", expires: t0}, {s: "+123"}, {s: "1-2-3", expires: t0.Add(day)}}, zero},
		{"prefix duplicates", []add{{s: "123", prefix: true, expires: t0}, {s: "123", prefix: true, expires: t0.Add(day)}}, t0.Add(day)},
		{"sub-second expiry rounds up", []add{{s: "123", expires: t0.Add(time.Millisecond)}}, t0.Add(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := build(t, tt.adds...)
			if l.Len() != 1 {
				t.Fatalf("Len = %d, want 1", l.Len())
			}
			m, ok := l.Lookup("123", t0.Add(-2*day))
			if !ok || !m.Expires.Equal(tt.want) {
				t.Fatalf("Lookup = %+v, %v; want Expires %v", m, ok, tt.want)
			}
		})
	}
}

func TestBuilderErrors(t *testing.T) {
	b := NewBuilder("x")
	for _, s := range []string{"", "abc", "1234567890123456", "12*", "+"} {
		if err := b.AddNumber(s, zero); !errors.Is(err, ErrNotNumber) || !strings.Contains(err.Error(), `"`+s+`"`) {
			t.Errorf("AddNumber(%q) = %v", s, err)
		}
		if err := b.AddPrefix(s, zero); !errors.Is(err, ErrNotNumber) {
			t.Errorf("AddPrefix(%q) = %v", s, err)
		}
	}
	if l := b.Build(); l.Len() != 0 {
		t.Errorf("Len = %d after only errors", l.Len())
	}
}

func TestBuildResetsBuilder(t *testing.T) {
	b := NewBuilder("x")
	_ = b.AddNumber("1", zero)
	first := b.Build()
	_ = b.AddNumber("2", zero)
	second := b.Build()
	if _, ok := second.Lookup("1", t0); ok || second.Len() != 1 {
		t.Errorf("second list has the first list's entries")
	}
	if _, ok := first.Lookup("1", t0); !ok {
		t.Errorf("first list lost its entry")
	}
}

// TestHighHalves exercises values on both sides of the 2^32 split.
func TestHighHalves(t *testing.T) {
	nums := []string{"4294967295", "4294967296", "8589934592", "999999999999999", "100000000000000", "0000000000"}
	var adds []add
	for _, n := range nums {
		adds = append(adds, add{s: n})
	}
	l := build(t, adds...)
	for _, n := range nums {
		if m, ok := l.Lookup(n, t0); !ok || m.Entry != n {
			t.Errorf("Lookup(%q) = %+v, %v", n, m, ok)
		}
	}
	for _, n := range []string{"4294967294", "4294967297", "8589934593", "0", "00000000000", "100000000000001"} {
		if m, ok := l.Lookup(n, t0); ok {
			t.Errorf("Lookup(%q) matched %+v", n, m)
		}
	}
}

func TestLoadLines(t *testing.T) {
	const file = "\xef\xbb\xbf# consent list\n" +
		"+1 (202) 555-0100\n" +
		"\n" +
		"1.303.555.0100 , 2025-06-01   # consent ends\n" +
		"1404*\n" +
		"  1505 * ,2025-05-31\n" +
		"\t0123\t\r\n" +
		"44 20*,2099-12-31\n"
	l, err := LoadReader("consent", strings.NewReader(file), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	endOf := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		tn   string
		at   time.Time
		ok   bool
		want Match
	}{
		{"12025550100", t0, true, Match{Entry: "12025550100"}},
		{"13035550100", t0, true, Match{Entry: "13035550100", Expires: endOf(2025, 6, 1)}}, // last day
		{"13035550100", time.Date(2025, 6, 1, 23, 59, 59, 0, time.UTC), true, Match{Entry: "13035550100", Expires: endOf(2025, 6, 1)}},
		{"13035550100", time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC), false, Match{}}, // day after
		{"14045550100", t0, true, Match{Entry: "1404", Prefix: true}},
		{"15055550100", t0, false, Match{}}, // expired 2025-05-31
		{"15055550100", t0.AddDate(0, 0, -2), true, Match{Entry: "1505", Prefix: true, Expires: endOf(2025, 5, 31)}},
		{"0123", t0, true, Match{Entry: "0123"}},
		{"442071234567", t0, true, Match{Entry: "4420", Prefix: true, Expires: endOf(2099, 12, 31)}},
	}
	for _, tt := range tests {
		got, ok := l.Lookup(tt.tn, tt.at)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Lookup(%q, %v) = %+v, %v; want %+v, %v", tt.tn, tt.at, got, ok, tt.want, tt.ok)
		}
	}
	if l.Len() != 6 {
		t.Errorf("Len = %d, want 6", l.Len())
	}

	// With Now, entries already expired are not kept.
	l, err = LoadReader("consent", strings.NewReader(file), LoadOptions{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 5 {
		t.Errorf("Len with Now = %d, want 5 (1505* dropped)", l.Len())
	}
	if _, ok := l.Lookup("15055550100", t0.AddDate(0, 0, -2)); ok {
		t.Errorf("entry expired at load time still listed")
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		opt   LoadOptions
		want  []string // substrings of the error
		is    error
	}{
		{"letter", "12025550100\n# ok\n1202555010x\n", LoadOptions{}, []string{"list:3:", `"1202555010x"`}, ErrNotNumber},
		{"too long", "1234567890123456\n", LoadOptions{}, []string{"list:1:", `"1234567890123456"`}, ErrNotNumber},
		{"star only", "1\n*\n", LoadOptions{}, []string{"list:2:", `"*"`}, ErrNotNumber},
		{"star inside", "12*3\n", LoadOptions{}, []string{"list:1:", `"12*3"`}, ErrNotNumber},
		{"double star", "12**\n", LoadOptions{}, []string{"list:1:", `"12**"`}, ErrNotNumber},
		{"plus inside", "1+2\n", LoadOptions{}, []string{"list:1:", `"1+2"`}, ErrNotNumber},
		{"tab inside", "12\t34\n", LoadOptions{}, []string{"list:1:"}, ErrNotNumber},
		{"empty number", "\n\n,2025-01-01\n", LoadOptions{}, []string{"list:3:", `""`}, ErrNotNumber},
		{"bad date", "1\n2,2025-13-01\n", LoadOptions{}, []string{"list:2:", `"2025-13-01"`}, ErrSyntax},
		{"date format", "1,01/02/2025\n", LoadOptions{}, []string{"list:1:", `"01/02/2025"`}, ErrSyntax},
		{"empty date", "1,\n", LoadOptions{}, []string{"list:1:", `expiry ""`}, ErrSyntax},
		{"three columns", "1,2025-01-01,x\n", LoadOptions{}, []string{"list:1:", "two columns"}, ErrSyntax},
		{"long line", "1\n" + strings.Repeat(" ", maxLine+1) + "\n", LoadOptions{}, []string{"list:2:", "longer"}, ErrSyntax},
		{"unknown format", "1\n", LoadOptions{Format: "json"}, []string{`"json"`}, ErrSyntax},
		{"country code with lines", "1\n", LoadOptions{CountryCode: "1"}, []string{`"1"`}, ErrSyntax},
		{"bad country code", "202,5550100\n", LoadOptions{Format: FormatAreaNumberCSV, CountryCode: "1x"}, []string{`"1x"`}, ErrSyntax},
		{"long country code", "202,5550100\n", LoadOptions{Format: FormatAreaNumberCSV, CountryCode: "1234"}, []string{`"1234"`}, ErrSyntax},
		{"csv one column", "202,5550100\n2025550101\n", LoadOptions{Format: FormatAreaNumberCSV}, []string{"list:2:", `"2025550101"`}, ErrSyntax},
		{"csv three columns", "202,555,0100\n", LoadOptions{Format: FormatAreaNumberCSV}, []string{"list:1:"}, ErrSyntax},
		{"csv short area", "202,5550100\n20,5550100\n", LoadOptions{Format: FormatAreaNumberCSV}, []string{"list:2:", `"20"`}, ErrNotNumber},
		{"csv long number", "202,55501000\n", LoadOptions{Format: FormatAreaNumberCSV}, []string{"list:1:", `"55501000"`}, ErrNotNumber},
		{"csv letter", "202,555O100\n", LoadOptions{Format: FormatAreaNumberCSV}, []string{"list:1:", `"555O100"`}, ErrNotNumber},
		{"csv header not first", "202,5550100\narea,number\n", LoadOptions{Format: FormatAreaNumberCSV}, []string{"list:2:", `"area"`}, ErrNotNumber},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := LoadReader("list", strings.NewReader(tt.input), tt.opt)
			if err == nil {
				t.Fatalf("no error; list of %d", l.Len())
			}
			if l != nil {
				t.Errorf("partial list returned with error")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadAreaNumberCSV(t *testing.T) {
	const file = "AreaCode,PhoneNumber\n" +
		"202,5550100\n" +
		"\"303\",\"5550100\"\r\n" +
		" 404 , 5550100 \n" +
		"# comment\n\n" +
		"202,5550100\n" // duplicate
	tests := []struct {
		cc   string
		hit  []string
		miss []string
	}{
		{"1", []string{"12025550100", "13035550100", "14045550100"}, []string{"2025550100", "12025550101"}},
		{"+1", []string{"12025550100"}, []string{"2025550100"}},
		{"", []string{"2025550100", "3035550100"}, []string{"12025550100"}},
		{"44", []string{"442025550100"}, []string{"12025550100"}},
	}
	for _, tt := range tests {
		l, err := LoadReader("dnc", strings.NewReader(file), LoadOptions{Format: FormatAreaNumberCSV, CountryCode: tt.cc})
		if err != nil {
			t.Fatalf("cc %q: %v", tt.cc, err)
		}
		if l.Len() != 3 {
			t.Errorf("cc %q: Len = %d, want 3", tt.cc, l.Len())
		}
		for _, n := range tt.hit {
			if m, ok := l.Lookup(n, t0); !ok || m.Entry != n || m.Prefix {
				t.Errorf("cc %q: Lookup(%q) = %+v, %v", tt.cc, n, m, ok)
			}
		}
		for _, n := range tt.miss {
			if m, ok := l.Lookup(n, t0); ok {
				t.Errorf("cc %q: Lookup(%q) matched %+v", tt.cc, n, m)
			}
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "allow.txt")
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(good, []byte("911\n112\n1800*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("911\n\n9 1 1 x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := LoadFile("emergency", good, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Lookup("911", t0); !ok || l.Len() != 3 || l.Name() != "emergency" {
		t.Errorf("list %q of %d does not list 911", l.Name(), l.Len())
	}
	_, err = LoadFile("emergency", bad, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), bad+":3: ") || !strings.Contains(err.Error(), `"9 1 1 x"`) {
		t.Errorf("error %v does not name %s:3 and the value", err, bad)
	}
	if _, err := LoadFile("x", filepath.Join(dir, "missing.txt"), LoadOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	l := build(t, add{s: "12025550100", expires: t0.Add(day)}, add{s: "1303", prefix: true})
	allocs := testing.AllocsPerRun(100, func() {
		l.Lookup("12025550100", t0)
		l.Lookup("13035550100", t0)
		l.Lookup("19995550100", t0)
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times", allocs)
	}
}

func TestConcurrentLookups(t *testing.T) {
	l := build(t, add{s: "12025550100"}, add{s: "1303", prefix: true, expires: t0.Add(day)})
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 1000 {
				if _, ok := l.Lookup("13035550100", t0); !ok {
					t.Error("lost match")
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}

// TestAgainstReference compares Lookup with a naive implementation over
// random lists of every length, clustered and spread, with expiries.
func TestAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	randTN := func() string {
		n := 1 + r.IntN(MaxDigits)
		var sb strings.Builder
		for i := range n {
			if i < 6 && r.IntN(2) == 0 { // cluster: many share leading digits
				sb.WriteByte('1')
			} else {
				sb.WriteByte(byte('0' + r.IntN(10)))
			}
		}
		return sb.String()
	}
	for round := range 20 {
		exact, prefix := map[string]time.Time{}, map[string]time.Time{}
		b := NewBuilder("ref")
		var probes []string
		for range 50 + r.IntN(3000) {
			tn := randTN()
			var exp time.Time
			if r.IntN(3) == 0 {
				exp = t0.Add(time.Duration(r.IntN(200)-100) * time.Hour)
			}
			m, add := exact, b.AddNumber
			if r.IntN(4) == 0 {
				m, add = prefix, b.AddPrefix
			}
			if err := add(tn, exp); err != nil {
				t.Fatal(err)
			}
			if old, ok := m[tn]; !ok || (!old.IsZero() && (exp.IsZero() || exp.After(old))) {
				m[tn] = exp
			}
			probes = append(probes, tn, tn+"1", randTN())
			if len(tn) > 1 {
				probes = append(probes, tn[:len(tn)-1])
			}
		}
		l := b.Build()
		if l.Len() != len(exact)+len(prefix) {
			t.Fatalf("round %d: Len = %d, want %d", round, l.Len(), len(exact)+len(prefix))
		}
		live := func(exp time.Time) bool { return exp.IsZero() || t0.Before(exp) }
		for _, tn := range probes {
			var want Match
			found := false
			if exp, ok := exact[tn]; ok && live(exp) {
				want, found = Match{Entry: tn, Expires: exp}, true
			}
			for L := len(tn); L >= 1 && !found && len(tn) <= MaxDigits; L-- {
				if exp, ok := prefix[tn[:L]]; ok && live(exp) {
					want, found = Match{Entry: tn[:L], Prefix: true, Expires: exp}, true
				}
			}
			got, ok := l.Lookup(tn, t0)
			if ok != found || got.Entry != want.Entry || got.Prefix != want.Prefix || !got.Expires.Equal(want.Expires) {
				t.Fatalf("round %d: Lookup(%q) = %+v, %v; want %+v, %v", round, tn, got, ok, want, found)
			}
		}
	}
}
