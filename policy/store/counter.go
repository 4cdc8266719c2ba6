package store

import (
	"context"
	"fmt"
	"math"
	"time"
)

// counterEntry is one Counter key: CounterBuckets counts of width ns each,
// the newest being bucket index head (time/width), stored at head%N.
type counterEntry struct {
	width  int64
	head   int64
	counts [CounterBuckets]uint32
}

func counterExpired(e *counterEntry, now int64) bool {
	return floorDiv(now, e.width)-e.head >= CounterBuckets
}

// advance moves head to idx (if later), zeroing the buckets that leave the
// window.
func (e *counterEntry) advance(idx int64) {
	if idx <= e.head {
		return
	}
	if idx-e.head >= CounterBuckets {
		e.counts = [CounterBuckets]uint32{}
	} else {
		for i := e.head + 1; i <= idx; i++ {
			e.counts[i%CounterBuckets] = 0
		}
	}
	e.head = idx
}

// sum is the total at head (buckets older than the window are zero).
func (e *counterEntry) sum() int {
	s := 0
	for _, c := range e.counts {
		s += int(c)
	}
	return s
}

type memCounter struct{ table[counterEntry] }

func checkWindow(window time.Duration) error {
	if window < CounterBuckets {
		return fmt.Errorf("%w: window %v", ErrInvalid, window)
	}
	return nil
}

// Add implements Counter.
func (c *memCounter) Add(ctx context.Context, key string, n int, window time.Duration, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: negative count %d", ErrInvalid, n)
	}
	width := int64(window) / CounterBuckets
	ns := now.UnixNano()
	idx := floorDiv(ns, width)
	sh := c.shard(key)
	sh.mu.Lock()
	e := sh.m[key]
	if e == nil {
		if e = c.insert(sh, key, ns); e == nil {
			sh.mu.Unlock()
			return 0, fmt.Errorf("counter %q: %w", key, ErrFull)
		}
		e.width, e.head = width, idx
	} else if e.width != width {
		*e = counterEntry{width: width, head: idx}
	} else {
		e.advance(idx)
	}
	b := &e.counts[e.head%CounterBuckets]
	if uint64(n) > math.MaxUint32-uint64(*b) {
		*b = math.MaxUint32
	} else {
		*b += uint32(n)
	}
	s := e.sum()
	sh.mu.Unlock()
	return s, nil
}

// Count implements Counter.
func (c *memCounter) Count(ctx context.Context, key string, window time.Duration, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	width := int64(window) / CounterBuckets
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil || e.width != width {
		return 0, nil
	}
	e.advance(floorDiv(now.UnixNano(), width))
	return e.sum(), nil
}
