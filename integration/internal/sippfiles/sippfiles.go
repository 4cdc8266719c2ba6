// Package sippfiles reads what SIPp and the processes under test leave on
// disk, for the end-to-end tests and the side-by-side benchmark alike.
package sippfiles

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
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

// InviteTiming is one INVITE as a SIPp caller saw it.
type InviteTiming struct {
	CallID string
	Sent   float64 // epoch seconds (µs resolution) the first INVITE left
	Final  float64 // epoch seconds its final response arrived (0: none)
	Code   int     // the final response's status (0: none)
}

// Wait is first INVITE sent -> final response received (0 without one).
func (c InviteTiming) Wait() time.Duration {
	if c.Code == 0 {
		return 0
	}
	return time.Duration(math.Round((c.Final-c.Sent)*1e6)) * time.Microsecond
}

// InviteTimings reads SIPp's -trace_shortmsg file (tab-separated: date,
// time, epoch seconds with µs, S|R, Call-ID, "CSeq: N METHOD", first line)
// and returns every INVITE the caller sent, in sending order, with its
// final response.
func InviteTimings(path string) ([]InviteTiming, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sipp short messages: %w", err)
	}
	defer f.Close()
	index := map[string]int{}
	var out []InviteTiming
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) < 7 || !strings.HasSuffix(fs[5], " INVITE") {
			continue
		}
		ts, err := strconv.ParseFloat(fs[2], 64)
		if err != nil {
			continue
		}
		id, line := fs[4], fs[6]
		i, seen := index[id]
		switch {
		case fs[3] == "S" && strings.HasPrefix(line, "INVITE ") && !seen:
			index[id] = len(out)
			out = append(out, InviteTiming{CallID: id, Sent: ts})
		case fs[3] == "R" && strings.HasPrefix(line, "SIP/2.0 ") && seen && out[i].Code == 0:
			if f := strings.Fields(line); len(f) > 1 {
				if code, err := strconv.Atoi(f[1]); err == nil && code >= 200 {
					out[i].Code, out[i].Final = code, ts
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sipp short messages %s: %w", path, err)
	}
	return out, nil
}
