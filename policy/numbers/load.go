package numbers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
)

// File formats.
const (
	// FormatLines: one number or prefix per line. "#" starts a comment,
	// blank lines are skipped, a leading "+" and the separators . - ( )
	// space are ignored, a trailing "*" makes the entry a prefix, and an
	// optional second column ",YYYY-MM-DD" is the last day (UTC) on which
	// the entry matches.
	FormatLines = "lines"
	// FormatAreaNumberCSV: the FTC (US) and CRTC (Canada) registry download
	// format, "area,number" per line: a 3-digit area code and a 7-digit
	// number, optionally in double quotes. LoadOptions.CountryCode is put
	// in front, so with "1", 202,5550100 is 12025550100. A first line
	// without digits is a header and is skipped; "#" comments and blank
	// lines are skipped.
	FormatAreaNumberCSV = "area_number_csv"
)

// LoadOptions say how to read a list file.
type LoadOptions struct {
	// Format is FormatLines (the default when empty) or FormatAreaNumberCSV.
	Format string
	// CountryCode (1 to 3 digits, e.g. "1" for NANP; a leading "+" is
	// allowed) is prefixed to every number of a FormatAreaNumberCSV file;
	// empty keeps the 10-digit national numbers. Setting it for FormatLines,
	// whose numbers are already E.164, is an error.
	CountryCode string
	// Now, when not zero, drops the entries that have already expired at
	// Now while loading, so they take no memory. Lookup checks expiry
	// against its own now either way.
	Now time.Time
}

// maxLine is the longest line a list file may have.
const maxLine = 64 * 1024

// LoadFile reads the list file at path into a List called name. Errors name
// path:line and the bad value; on any error no List is returned.
func LoadFile(name, path string, opt LoadOptions) (*List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("numbers: %w", err)
	}
	defer f.Close()
	return load(name, path, f, opt)
}

// LoadReader is LoadFile from r; errors name the list (name:line).
func LoadReader(name string, r io.Reader, opt LoadOptions) (*List, error) {
	return load(name, name, r, opt)
}

func load(name, src string, r io.Reader, opt LoadOptions) (*List, error) {
	var cc []byte
	csv := false
	switch opt.Format {
	case "", FormatLines:
		if opt.CountryCode != "" {
			return nil, fmt.Errorf("%s: country code %q applies only to format %q: %w", src, opt.CountryCode, FormatAreaNumberCSV, ErrSyntax)
		}
	case FormatAreaNumberCSV:
		c := opt.CountryCode
		if len(c) > 0 && c[0] == '+' {
			c = c[1:]
		}
		if len(c) > 3 || c != "" && !allDigits([]byte(c)) {
			return nil, fmt.Errorf("%s: country code %q is not 1 to 3 digits: %w", src, opt.CountryCode, ErrSyntax)
		}
		cc, csv = []byte(c), true
	default:
		return nil, fmt.Errorf("%s: unknown format %q (want %q or %q): %w", src, opt.Format, FormatLines, FormatAreaNumberCSV, ErrSyntax)
	}
	now := int64(0)
	dropExpired := !opt.Now.IsZero()
	if dropExpired {
		now = opt.Now.Unix()
	}

	b := NewBuilder(name)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	var buf [MaxDigits]byte
	ln := 0
	for sc.Scan() {
		ln++
		line := sc.Bytes()
		if ln == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 BOM
		}
		var (
			d        []byte
			isPrefix bool
			exp      int64 = never
			err      error
		)
		if csv {
			d, err = parseAreaNumber(line, ln, cc, &buf)
		} else {
			d, isPrefix, exp, err = parseLine(line, &buf)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", src, ln, err)
		}
		if d == nil || dropExpired && now >= exp {
			continue
		}
		b.addDigits(d, isPrefix, exp)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes: %w", src, ln+1, maxLine, ErrSyntax)
		}
		return nil, fmt.Errorf("%s:%d: read: %w", src, ln+1, err)
	}
	return b.Build(), nil
}

// parseLine parses one line of FormatLines. d is nil for a blank or comment
// line; else it holds the canonical digits (in buf).
func parseLine(line []byte, buf *[MaxDigits]byte) (d []byte, isPrefix bool, exp int64, err error) {
	exp = never
	if i := bytes.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, false, never, nil
	}
	num, date, hasDate := bytes.Cut(line, []byte(","))
	num = bytes.TrimSpace(num)
	field := num
	if p, ok := bytes.CutSuffix(num, []byte("*")); ok {
		isPrefix, num = true, bytes.TrimSpace(p)
	}
	n, ok := passport.Digits(num, buf)
	if !ok {
		return nil, false, never, fmt.Errorf("%q: %w (want digits with optional + and separators . - ( ) space, 1 to %d, a trailing * for a prefix)", field, ErrNotNumber, MaxDigits)
	}
	if hasDate {
		date = bytes.TrimSpace(date)
		if bytes.IndexByte(date, ',') >= 0 {
			return nil, false, never, fmt.Errorf("%q: more than two columns (want number[,YYYY-MM-DD]): %w", line, ErrSyntax)
		}
		t, perr := time.Parse(time.DateOnly, string(date))
		if perr != nil {
			return nil, false, never, fmt.Errorf("expiry %q is not a date YYYY-MM-DD: %w", date, ErrSyntax)
		}
		// The date is the last day the entry matches: it expires at the
		// start of the next day, UTC.
		exp = t.AddDate(0, 0, 1).Unix()
	}
	return buf[:n], isPrefix, exp, nil
}

// parseAreaNumber parses one line of FormatAreaNumberCSV into cc + area +
// number (in buf); d is nil for a blank, comment or header line.
func parseAreaNumber(line []byte, ln int, cc []byte, buf *[MaxDigits]byte) ([]byte, error) {
	t := bytes.TrimSpace(line)
	if len(t) == 0 || t[0] == '#' {
		return nil, nil
	}
	if ln == 1 && bytes.IndexFunc(t, func(r rune) bool { return r >= '0' && r <= '9' }) < 0 {
		return nil, nil // header, e.g. "AreaCode,PhoneNumber"
	}
	area, num, ok := bytes.Cut(t, []byte(","))
	if !ok || bytes.IndexByte(num, ',') >= 0 {
		return nil, fmt.Errorf("%q: want two columns area,number: %w", t, ErrSyntax)
	}
	area, num = unquote(area), unquote(num)
	if len(area) != 3 || !allDigits(area) {
		return nil, fmt.Errorf("area code %q is not 3 digits: %w", area, ErrNotNumber)
	}
	if len(num) != 7 || !allDigits(num) {
		return nil, fmt.Errorf("number %q is not 7 digits: %w", num, ErrNotNumber)
	}
	n := copy(buf[:], cc)
	n += copy(buf[n:], area)
	n += copy(buf[n:], num)
	return buf[:n], nil
}

func unquote(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = bytes.TrimSpace(b[1 : len(b)-1])
	}
	return b
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
