package store

import (
	"context"
	"fmt"
	"time"
)

type flagEntry struct{ until int64 }

func flagExpired(e *flagEntry, now int64) bool { return e.until <= now }

type memFlags struct{ table[flagEntry] }

// Set implements Flags.
func (f *memFlags) Set(ctx context.Context, key string, ttl time.Duration, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ns := now.UnixNano()
	sh := f.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if ttl <= 0 {
		if e != nil {
			delete(sh.m, key)
		}
		return nil
	}
	if e == nil {
		if e = f.insert(sh, key, ns); e == nil {
			return fmt.Errorf("flag %q: %w", key, ErrFull)
		}
	}
	e.until = ns + int64(ttl)
	return nil
}

// Get implements Flags.
func (f *memFlags) Get(ctx context.Context, key string, now time.Time) (time.Time, bool, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, false, err
	}
	sh := f.shard(key)
	sh.mu.Lock()
	e := sh.m[key]
	var u int64
	if e != nil {
		u = e.until
	}
	sh.mu.Unlock()
	if e == nil || u <= now.UnixNano() {
		return time.Time{}, false, nil
	}
	return time.Unix(0, u), true, nil
}
