// Package sippfiles reads what SIPp and the processes under test leave on
// disk, for the end-to-end tests and the side-by-side benchmark alike.
package sippfiles

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stats is one line of a -trace_stat file, by column.
type Stats map[string]string

// Int is a counter column; -1 when it is absent or not a number.
func (s Stats) Int(col string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s[col]))
	if err != nil {
		return -1
	}
	return n
}

// ReadStats reads the header and the last line of a -trace_stat file
// (';'-separated; the last line is the final, cumulative one).
func ReadStats(path string) (Stats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sipp stats: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("sipp stats %s: %d lines, want a header and a data line", path, len(lines))
	}
	head := strings.Split(strings.TrimSpace(lines[0]), ";")
	vals := strings.Split(strings.TrimSpace(lines[len(lines)-1]), ";")
	s := Stats{}
	for i, h := range head {
		if i < len(vals) && h != "" {
			s[h] = vals[i]
		}
	}
	return s, nil
}

// ReadFile is the file's content, "" when it cannot be read (for logs
// shown on failure).
func ReadFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return string(b)
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
