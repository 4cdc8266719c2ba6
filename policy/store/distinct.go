package store

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"
)

type distinctMember struct {
	h  uint64 // maphash of the member
	at int64  // last time added, ns
}

// distinctEntry is one Distinct key. members is small (at most maxMembers)
// and scanned linearly; expired members are compacted away on every Add.
type distinctEntry struct {
	window  int64 // of the last Add, for idle expiry
	last    int64 // newest at
	members []distinctMember
}

func distinctExpired(e *distinctEntry, now int64) bool {
	return now-e.last >= e.window
}

type memDistinct struct {
	table[distinctEntry]
	maxMembers int
	saturated  atomic.Uint64
}

// Add implements Distinct.
func (d *memDistinct) Add(ctx context.Context, key, member string, window time.Duration, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if window <= 0 {
		return 0, fmt.Errorf("%w: window %v", ErrInvalid, window)
	}
	ns := now.UnixNano()
	h := maphash.String(d.seed, member)
	sh := d.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil {
		if e = d.insert(sh, key, ns); e == nil {
			return 0, fmt.Errorf("distinct %q: %w", key, ErrFull)
		}
	}
	e.window = int64(window)
	if ns > e.last {
		e.last = ns
	}
	cutoff := ns - int64(window) // members at or before cutoff are out
	found := false
	ms := e.members
	j := 0 // members[:j] are kept; writes start at the first dropped one
	for i := range ms {
		if ms[i].h == h {
			found = true
			ms[i].at = max(ms[i].at, ns)
		}
		if ms[i].at > cutoff {
			if j != i {
				ms[j] = ms[i]
			}
			j++
		}
	}
	clear(ms[j:])
	e.members = ms[:j]
	if !found {
		if len(e.members) >= d.maxMembers {
			d.saturated.Add(1)
			return d.maxMembers, nil
		}
		e.members = append(e.members, distinctMember{h: h, at: ns})
	}
	return len(e.members), nil
}
