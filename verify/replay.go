package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// ReplayKey names one signed PASSporT for the replay check: a SHA-256 of
// the signing input as received (header.payload) and of the signature with
// S in its low form (see replayKey), so re-encoding or malleating the
// signature of a captured token does not make it a new one.
type ReplayKey [32]byte

// ReplayStore remembers the PASSporTs that verified, for as long as they
// could be presented again (the freshness window). Only verified tokens are
// recorded, so forged ones cannot fill it, and a token that failed for a
// transient reason (436, x5u fetch) can be retried.
//
// Claim is the one write and it is atomic: it records key for ttl unless it
// is already there, and of any number of concurrent Claims of one key
// exactly one returns true. On Redis it is SET key 1 NX PX ttl. Seen is a
// read the verifier makes before the certificate fetch, so a replay costs
// no fetch or signature check; it may be stale (only Claim decides) and an
// error from it is ignored. A Claim error fails the verification (503,
// ErrReplayStore): the verifier cannot tell whether the token is a replay.
type ReplayStore interface {
	Seen(ctx context.Context, key ReplayKey, now time.Time) (bool, error)
	Claim(ctx context.Context, key ReplayKey, ttl time.Duration, now time.Time) (bool, error)
}

// replayKey is the ReplayKey of a signature sig (R||S, 64 bytes) over
// signingInput. ECDSA accepts S and n-S alike (both verify), and base64url
// decoding tolerates other trailing bits, so keying on the received text
// would let one captured token pass once per spelling; keying on the
// decoded R and the lower of S and n-S gives every spelling one key.
func replayKey(signingInput string, sig []byte) ReplayKey {
	h := sha256.New()
	_, _ = h.Write([]byte(signingInput))
	_, _ = h.Write(sig[:32])
	s := lowS(sig[32:64])
	_, _ = h.Write(s[:])
	var k ReplayKey
	h.Sum(k[:0])
	return k
}

// p256N is the order of the P-256 group, big-endian; p256HalfN is n/2
// (rounded down).
var (
	p256N     = [32]byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51}
	p256HalfN = halve(p256N)
)

func halve(n [32]byte) [32]byte {
	var out [32]byte
	carry := byte(0)
	for i := range n {
		out[i] = n[i]>>1 | carry<<7
		carry = n[i] & 1
	}
	return out
}

// lowS returns s (32 bytes, big-endian) when s <= n/2, else n-s.
func lowS(s []byte) [32]byte {
	var out [32]byte
	if bytes.Compare(s, p256HalfN[:]) <= 0 {
		copy(out[:], s)
		return out
	}
	borrow := 0
	for i := 31; i >= 0; i-- {
		d := int(p256N[i]) - int(s[i]) - borrow
		borrow = 0
		if d < 0 {
			d += 256
			borrow = 1
		}
		out[i] = byte(d)
	}
	return out
}

// MemoryReplay is the in-memory ReplayStore: the keys of the PASSporTs that
// verified, in two generations rotated every window (the longest ttl a
// Claim asked for), so memory is bounded by the rate of verified calls times two
// windows and a key lives between one and two windows (always at least the
// ttl asked for). The shared (Redis) store comes later behind the same
// interface.
type MemoryReplay struct {
	mu        sync.Mutex
	window    time.Duration
	rotated   time.Time
	cur, prev map[ReplayKey]struct{}
}

// NewMemoryReplay returns an empty store.
func NewMemoryReplay() *MemoryReplay {
	return &MemoryReplay{cur: map[ReplayKey]struct{}{}, prev: map[ReplayKey]struct{}{}}
}

// rotate ages the generations at now; the caller holds mu.
func (m *MemoryReplay) rotate(now time.Time) {
	if m.window <= 0 {
		return
	}
	if m.rotated.IsZero() {
		m.rotated = now
	}
	if age := now.Sub(m.rotated); age >= m.window {
		if age >= 2*m.window {
			m.prev = map[ReplayKey]struct{}{}
		} else {
			m.prev = m.cur
		}
		m.cur, m.rotated = make(map[ReplayKey]struct{}, len(m.prev)), now
	}
}

func (m *MemoryReplay) has(key ReplayKey) bool {
	if _, ok := m.cur[key]; ok {
		return true
	}
	_, ok := m.prev[key]
	return ok
}

// Seen reports whether key was claimed within its ttl. It never fails.
func (m *MemoryReplay) Seen(_ context.Context, key ReplayKey, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rotate(now)
	return m.has(key), nil
}

// Claim records key for at least ttl and returns true, or returns false when
// it was claimed within its ttl before. It never fails.
func (m *MemoryReplay) Claim(_ context.Context, key ReplayKey, ttl time.Duration, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ttl > m.window {
		m.window = ttl
	}
	m.rotate(now)
	if m.has(key) {
		return false, nil
	}
	m.cur[key] = struct{}{}
	return true, nil
}

// Len is the number of keys held (both generations), for tests and
// capacity checks.
func (m *MemoryReplay) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cur) + len(m.prev)
}
