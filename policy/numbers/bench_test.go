package numbers

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
)

const benchN, benchPrefixes = 1_000_000, 10_000

// benchNumbers returns n distinct-ish 11-digit NANP numbers.
func benchNumbers(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]string, n)
	for i := range out {
		out[i] = "1" + strconv.FormatUint(2_000_000_000+r.Uint64N(8_000_000_000), 10)
	}
	return out
}

// benchList is 1M exact NANP numbers (a tenth with an expiry) and 10k
// prefixes of 4 to 8 digits under +44, so that a NANP number not in the list
// searches the exact table and every prefix length before missing.
func benchList(b *testing.B) (*List, []string) {
	nums := benchNumbers(benchN)
	r := rand.New(rand.NewPCG(3, 4))
	bl := NewBuilder("bench")
	for i, n := range nums {
		var exp time.Time
		if i%10 == 0 {
			exp = t0.Add(time.Duration(1+r.IntN(1000)) * time.Hour)
		}
		if err := bl.AddNumber(n, exp); err != nil {
			b.Fatal(err)
		}
	}
	for range benchPrefixes {
		p := "44" + strconv.FormatUint(1e9+r.Uint64N(9e9), 10)
		if err := bl.AddPrefix(p[:4+r.IntN(5)], time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	return bl.Build(), nums
}

// BenchmarkLookup probes with 1M different numbers per case, so the
// list is not cache-resident: exact hits (in random order), misses (NANP
// numbers not listed), and prefix hits (+44 numbers).
func BenchmarkLookup(b *testing.B) {
	l, nums := benchList(b)
	r := rand.New(rand.NewPCG(5, 6))
	misses := make([]string, benchN)
	for i := range misses { // another seed's numbers; about 1 in 8000 is listed
		misses[i] = "1" + strconv.FormatUint(2_000_000_000+r.Uint64N(8_000_000_000), 10)
	}
	prefixed := make([]string, benchN)
	for i := range prefixed {
		prefixed[i] = "44" + strconv.FormatUint(1e9+r.Uint64N(9e9), 10)
	}
	for _, c := range []struct {
		name string
		tns  []string
	}{{"exact", nums}, {"miss", misses}, {"prefix", prefixed}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			found, i := 0, 0
			for b.Loop() {
				if _, ok := l.Lookup(c.tns[i%len(c.tns)], t0); ok {
					found++
				}
				i++
			}
			b.ReportMetric(float64(found)/float64(i), "hit-ratio")
		})
	}
}

func bench1MFile() []byte {
	var buf bytes.Buffer
	for i, n := range benchNumbers(benchN) {
		if i%10 == 0 {
			fmt.Fprintf(&buf, "+%s,2026-01-31\n", n)
		} else {
			buf.WriteString(n)
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

// BenchmarkLoad1M loads a file of 1M lines and reports the heap the list
// keeps (after GC, with the file and the loader's garbage collected).
func BenchmarkLoad1M(b *testing.B) {
	data := bench1MFile()
	b.SetBytes(int64(len(data)))
	var l *List
	for b.Loop() {
		var err error
		l, err = LoadReader("dnc", bytes.NewReader(data), LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	data = nil
	var before, after runtime.MemStats
	l2 := l
	l = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(l2)
	l2 = nil
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "list-MiB")
	_ = data
}

// BenchmarkLoadCSV1M is the FTC/CRTC download format.
func BenchmarkLoadCSV1M(b *testing.B) {
	var buf bytes.Buffer
	for _, n := range benchNumbers(benchN) {
		fmt.Fprintf(&buf, "%s,%s\n", n[1:4], n[4:])
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := LoadReader("dnc", bytes.NewReader(data), LoadOptions{Format: FormatAreaNumberCSV, CountryCode: "1"}); err != nil {
			b.Fatal(err)
		}
	}
}
