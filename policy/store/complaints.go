package store

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// complaintEntry is one subject: complaint times in ns, ascending.
type complaintEntry struct{ at []int64 }

type memComplaints struct {
	table[complaintEntry]
	retention     int64
	maxPerSubject int
	dropped       atomic.Uint64
}

func (c *memComplaints) subjectExpired(e *complaintEntry, now int64) bool {
	return len(e.at) == 0 || e.at[len(e.at)-1] <= now-c.retention
}

// Add implements Complaints. The time of the complaint is also the store time
// used to drop idle subjects.
func (c *memComplaints) Add(ctx context.Context, subject string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ns := at.UnixNano()
	sh := c.shard(subject)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[subject]
	if e == nil {
		if e = c.insert(sh, subject, ns); e == nil {
			return fmt.Errorf("complaints %q: %w", subject, ErrFull)
		}
	}
	// Drop complaints past the retention as of the newest one.
	newest := ns
	if n := len(e.at); n > 0 && e.at[n-1] > newest {
		newest = e.at[n-1]
	}
	if ns <= newest-c.retention {
		return nil
	}
	cut, _ := slices.BinarySearch(e.at, newest-c.retention+1)
	if cut > 0 {
		e.at = append(e.at[:0], e.at[cut:]...)
	}
	if len(e.at) >= c.maxPerSubject {
		if ns < e.at[0] {
			c.dropped.Add(1) // older than all kept ones: it is the one to drop
			return nil
		}
		e.at = append(e.at[:0], e.at[1:]...)
		c.dropped.Add(1)
	}
	i, _ := slices.BinarySearch(e.at, ns+1) // after equal times
	e.at = slices.Insert(e.at, i, ns)
	return nil
}

// Count implements Complaints.
func (c *memComplaints) Count(ctx context.Context, subject string, window time.Duration, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if window <= 0 {
		return 0, fmt.Errorf("%w: window %v", ErrInvalid, window)
	}
	ns := now.UnixNano()
	sh := c.shard(subject)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[subject]
	if e == nil {
		return 0, nil
	}
	lo, _ := slices.BinarySearch(e.at, ns-int64(window)+1)
	hi, _ := slices.BinarySearch(e.at, ns+1)
	return hi - lo, nil
}
