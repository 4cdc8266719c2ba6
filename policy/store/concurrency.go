package store

import (
	"context"
	"fmt"
	"time"
)

// concEntry holds the slots of one key: member -> expiry (ns).
type concEntry struct {
	slots  map[string]int64
	latest int64 // the latest expiry: the key is idle after it
}

func concExpired(e *concEntry, now int64) bool { return e.latest <= now }

type memConcurrency struct{ table[concEntry] }

// Acquire implements Concurrency.
func (c *memConcurrency) Acquire(ctx context.Context, key, member string, ttl time.Duration, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ns := now.UnixNano()
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil {
		if e = c.insert(sh, key, ns); e == nil {
			return 0, fmt.Errorf("concurrency %q: %w", key, ErrFull)
		}
		e.slots = map[string]int64{}
	}
	for m, until := range e.slots {
		if until <= ns {
			delete(e.slots, m)
		}
	}
	until := ns + int64(ttl)
	e.slots[member] = until
	e.latest = max(e.latest, until)
	return len(e.slots), nil
}

// Release implements Concurrency.
func (c *memConcurrency) Release(ctx context.Context, key, member string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[key]; e != nil {
		delete(e.slots, member)
		if len(e.slots) == 0 {
			delete(sh.m, key)
		}
	}
	return nil
}
