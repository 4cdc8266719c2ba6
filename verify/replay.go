package verify

import (
	"crypto/sha256"
	"sync"
	"time"
)

// MemoryReplay is the in-memory ReplayStore: a digest of every PASSporT
// seen, in two generations rotated every window, so memory is bounded by
// the call rate times two windows and an entry lives between one and two
// windows (always at least the freshness window the caller asks for). The
// shared (Redis) store comes later behind the same interface.
type MemoryReplay struct {
	mu        sync.Mutex
	rotated   time.Time
	cur, prev map[[32]byte]struct{}
}

// NewMemoryReplay returns an empty store.
func NewMemoryReplay() *MemoryReplay {
	return &MemoryReplay{cur: map[[32]byte]struct{}{}, prev: map[[32]byte]struct{}{}}
}

// Seen records key and reports whether it was recorded within ttl before.
func (m *MemoryReplay) Seen(key string, ttl time.Duration, now time.Time) bool {
	d := sha256.Sum256([]byte(key))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rotated.IsZero() {
		m.rotated = now
	}
	if now.Sub(m.rotated) >= ttl {
		if now.Sub(m.rotated) >= 2*ttl {
			m.prev = map[[32]byte]struct{}{}
		} else {
			m.prev = m.cur
		}
		m.cur, m.rotated = make(map[[32]byte]struct{}, len(m.prev)), now
	}
	if _, ok := m.cur[d]; ok {
		return true
	}
	if _, ok := m.prev[d]; ok {
		return true
	}
	m.cur[d] = struct{}{}
	return false
}
