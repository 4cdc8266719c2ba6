package sip

import (
	"sync"
	"time"
)

// ackFilter remembers the INVITE transactions that ended with a non-2xx
// final response, so that their hop-by-hop ACK is absorbed and never
// forwarded as if it were the ACK of a 2xx. sipgo ends a server transaction
// on a reliable transport as soon as the handler returns, so over TCP that
// ACK arrives as a new request (docs/sipgo.md row 4); over UDP it does
// after timer I, when the own transaction has ended.
//
// Two generations of keys, rotated every ttl: bounded memory, no sweeper,
// and a key lives between ttl and 2*ttl.
type ackFilter struct {
	mu        sync.Mutex
	ttl       time.Duration
	rotated   time.Time
	cur, prev map[string]struct{}
}

func newAckFilter(ttl time.Duration) *ackFilter {
	return &ackFilter{ttl: ttl, rotated: time.Now(), cur: map[string]struct{}{}, prev: map[string]struct{}{}}
}

func (f *ackFilter) rotate(now time.Time) {
	if now.Sub(f.rotated) >= f.ttl {
		f.prev, f.cur, f.rotated = f.cur, make(map[string]struct{}, len(f.cur)), now
	}
}

// add remembers an INVITE transaction key (branch and Call-ID).
func (f *ackFilter) add(key string) {
	f.mu.Lock()
	f.rotate(time.Now())
	f.cur[key] = struct{}{}
	f.mu.Unlock()
}

// absorbs reports whether an ACK with this key belongs to a non-2xx answer.
func (f *ackFilter) absorbs(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate(time.Now())
	_, a := f.cur[key]
	_, b := f.prev[key]
	return a || b
}
