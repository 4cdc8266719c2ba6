package numbers

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
)

// FuzzLoadLines: the line loader never panics, and every entry it accepts
// is listed when looked up before its expiry.
func FuzzLoadLines(f *testing.F) {
	for _, s := range []string{
		"12025550100\n",
		"+1 (202) 555-0100, 2025-06-01 # c\n1404*\n",
		"0123\n123\n\n# x\n",
		"999999999999999*,9999-12-31\n",
		"1,0001-01-01\n",
		"\xef\xbb\xbf1\r\n",
		"12*3\n",
		",\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		l, err := LoadReader("fuzz", strings.NewReader(data), LoadOptions{})
		if err != nil {
			if l != nil {
				t.Fatalf("list returned with error %v", err)
			}
			return
		}
		// Re-parse line by line and check each entry.
		sc := bufio.NewScanner(strings.NewReader(data))
		sc.Buffer(nil, maxLine)
		var buf [MaxDigits]byte
		first := true
		entries := 0
		for sc.Scan() {
			line := sc.Bytes()
			if first {
				line = []byte(strings.TrimPrefix(string(line), "\xef\xbb\xbf"))
				first = false
			}
			d, isPrefix, exp, err := parseLine(line, &buf)
			if err != nil {
				t.Fatalf("line %q accepted by the loader, rejected alone: %v", line, err)
			}
			if d == nil {
				continue
			}
			entries++
			at := time.Unix(0, 0)
			if exp != never {
				at = time.Unix(exp-1, 0)
			}
			tn := string(d)
			if isPrefix && len(tn) < MaxDigits {
				tn += "7"
			}
			m, ok := l.Lookup(tn, at)
			if !ok {
				t.Fatalf("line %q (%q) not listed at %v", line, tn, at)
			}
			if !strings.HasPrefix(tn, m.Entry) || m.Entry == "" {
				t.Fatalf("Lookup(%q) matched entry %q", tn, m.Entry)
			}
			if c, ok := passport.Canonical(string(d)); !ok || c != string(d) {
				t.Fatalf("accepted digits %q are not canonical", d)
			}
		}
		if l.Len() > entries {
			t.Fatalf("Len %d > %d entries", l.Len(), entries)
		}
	})
}
