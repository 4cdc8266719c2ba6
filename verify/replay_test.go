package verify

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
)

// spellings returns the Identity value id (signed by attest) written three
// ways that all verify: as signed, with S replaced by n-S (ECDSA accepts
// both), and with the signature's last base64url character changed in the
// bits the decoder ignores.
func spellings(t *testing.T, id string) []string {
	t.Helper()
	jws, params, _ := strings.Cut(id, ";")
	i := strings.LastIndexByte(jws, '.')
	input, sigB64 := jws[:i], jws[i+1:]
	sig, err := base64.RawURLEncoding.DecodeString(sigB64)
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature %q: %v", sigB64, err)
	}
	n := new(big.Int).SetBytes(p256N[:])
	s := new(big.Int).SetBytes(sig[32:])
	mall := append([]byte(nil), sig[:32]...)
	mall = append(mall, new(big.Int).Sub(n, s).FillBytes(make([]byte, 32))...)
	// 64 bytes are 86 characters; the last one carries 2 bits and 4 that
	// the decoder drops.
	last := strings.IndexByte(base64URL, sigB64[85])
	other := sigB64[:85] + string(base64URL[last^1])
	if other == sigB64 {
		t.Fatal("no other spelling")
	}
	if b, err := base64.RawURLEncoding.DecodeString(other); err != nil || string(b) != string(sig) {
		t.Fatalf("re-spelled signature decodes to something else: %v", err)
	}
	return []string{
		id,
		input + "." + base64.RawURLEncoding.EncodeToString(mall) + ";" + params,
		input + "." + other + ";" + params,
	}
}

const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// flakySource fails until fixed, like an x5u server that is down for a
// while: the verifier answers 436 meanwhile.
type flakySource struct {
	CertSource
	down atomic.Bool
}

func (f *flakySource) Chain(ctx context.Context, x5u string) ([]*x509.Certificate, error) {
	if f.down.Load() {
		return nil, errors.New("fetch " + x5u + ": connection refused")
	}
	return f.CertSource.Chain(ctx, x5u)
}

func newReplayService(src CertSource, creds Credentials, store ReplayStore) *Service {
	cfg := Config{Enabled: true, TrustRoots: []string{"x"}}
	cfg.ApplyDefaults()
	return New(cfg, src, creds, store, func() time.Time { return testNow })
}

// TestForgedTokenDoesNotBurnTheRealOne: tokens that carry a real
// PASSporT's header and claims but a bad signature are refused as bad
// signatures and recorded nowhere; the real one then passes, once.
func TestForgedTokenDoesNotBurnTheRealOne(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	store := NewMemoryReplay()
	s := newReplayService(mapSource{testX5U: p.chain}, poolCredentials{p.roots}, store)
	real := sign(t, p.key, testX5U, good())
	jws, params, _ := strings.Cut(real, ";")
	input := jws[:strings.LastIndexByte(jws, '.')]
	stolen := sign(t, other.key, testX5U, good()) // same claims, another key
	stolenSig := stolen[strings.LastIndexByte(strings.SplitN(stolen, ";", 2)[0], '.')+1 : strings.IndexByte(stolen, ';')]
	forged := []string{
		input + "." + strings.Repeat("A", 86) + ";" + params,
		input + "." + strings.Repeat("_", 86) + ";" + params,
		input + "." + stolenSig + ";" + params,
	}
	for i, f := range forged {
		v := s.Verify(context.Background(), Input{testOrig, testDest, []string{f}})
		if v.Passed || v.Code != 438 || !errors.Is(v.Kind, ErrSignature) {
			t.Fatalf("forged token %d: %+v, want 438 bad signature", i, v)
		}
	}
	if n := store.Len(); n != 0 {
		t.Fatalf("forged tokens left %d entries in the replay store", n)
	}
	in := Input{testOrig, testDest, []string{real}}
	if v := s.Verify(context.Background(), in); !v.Passed {
		t.Fatalf("real token after the forged ones: %+v", v)
	}
	if v := s.Verify(context.Background(), in); v.Passed || !errors.Is(v.Kind, ErrReplay) {
		t.Fatalf("real token the second time: %+v, want replay", v)
	}
}

// TestTransient436IsRetried: a valid token that met a failing x5u fetch
// (436) passes when the trunk retries it after the source recovered.
func TestTransient436IsRetried(t *testing.T) {
	p := newPKI(t)
	src := &flakySource{CertSource: mapSource{testX5U: p.chain}}
	s := newReplayService(src, poolCredentials{p.roots}, NewMemoryReplay())
	in := Input{testOrig, testDest, []string{sign(t, p.key, testX5U, good())}}
	src.down.Store(true)
	if v := s.Verify(context.Background(), in); v.Passed || v.Code != 436 || !errors.Is(v.Kind, ErrInfo) {
		t.Fatalf("while the source is down: %+v, want 436", v)
	}
	src.down.Store(false)
	if v := s.Verify(context.Background(), in); !v.Passed {
		t.Fatalf("retry after the source recovered: %+v, want passed", v)
	}
	if v := s.Verify(context.Background(), in); v.Passed || !errors.Is(v.Kind, ErrReplay) {
		t.Fatalf("third copy: %+v, want replay", v)
	}
}

type arrivedKey struct{}

// gateSource holds every fetch until all n verifications have either
// reached it or finished without it, so the copies race to the replay
// claim together instead of one after the other.
type gateSource struct {
	CertSource
	all sync.WaitGroup
}

func (g *gateSource) Chain(ctx context.Context, x5u string) ([]*x509.Certificate, error) {
	if a, ok := ctx.Value(arrivedKey{}).(*atomic.Bool); ok && a.CompareAndSwap(false, true) {
		g.all.Done()
		g.all.Wait()
	}
	return g.CertSource.Chain(ctx, x5u)
}

// TestConcurrentCopiesOnePasses: N goroutines verify copies of one valid
// PASSporT at once; exactly one passes, the others are replays. Run with
// -race.
func TestConcurrentCopiesOnePasses(t *testing.T) {
	p := newPKI(t)
	id := sign(t, p.key, testX5U, good())
	sp := spellings(t, id)
	const n = 12
	for _, tt := range []struct {
		name   string
		copies func(i int) string
	}{
		{"identical copies", func(int) string { return id }},
		{"copies re-encoded (S or n-S, other base64 trailing bits)", func(i int) string { return sp[i%len(sp)] }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := &gateSource{CertSource: mapSource{testX5U: p.chain}}
			src.all.Add(n)
			s := newReplayService(src, poolCredentials{p.roots}, NewMemoryReplay())
			var passed, replays atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					arrived := new(atomic.Bool)
					ctx := context.WithValue(context.Background(), arrivedKey{}, arrived)
					v := s.Verify(ctx, Input{testOrig, testDest, []string{tt.copies(i)}})
					if arrived.CompareAndSwap(false, true) { // refused before the fetch
						src.all.Done()
					}
					switch {
					case v.Passed:
						passed.Add(1)
					case errors.Is(v.Kind, ErrReplay):
						replays.Add(1)
					default:
						t.Errorf("copy %d: %+v", i, v)
					}
				}()
			}
			wg.Wait()
			if passed.Load() != 1 || replays.Load() != n-1 {
				t.Fatalf("%d passed, %d replays; want 1 and %d", passed.Load(), replays.Load(), n-1)
			}
		})
	}
}

// failingStore is a replay store that is down (a shared store unreachable).
type failingStore struct{}

func (failingStore) Seen(context.Context, ReplayKey, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

func (failingStore) Claim(context.Context, ReplayKey, time.Duration, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

// TestReplayStoreDown: when a verified token cannot be recorded, the
// verifier does not pass it (it cannot tell a replay) and says why.
func TestReplayStoreDown(t *testing.T) {
	p := newPKI(t)
	s := newReplayService(mapSource{testX5U: p.chain}, poolCredentials{p.roots}, failingStore{})
	v := s.Verify(context.Background(), Input{testOrig, testDest, []string{sign(t, p.key, testX5U, good())}})
	if v.Passed || v.Code != 503 || !errors.Is(v.Kind, ErrReplayStore) || !strings.Contains(v.Detail, "connection refused") {
		t.Fatalf("verdict %+v, want 503 replay_store_error", v)
	}
}

// TestReplayKeySpellings: every spelling of one signature has one key;
// another signature of the same claims has another.
func TestReplayKeySpellings(t *testing.T) {
	p := newPKI(t)
	id := sign(t, p.key, testX5U, good())
	var want ReplayKey
	for i, v := range spellings(t, id) {
		pid, err := ParseIdentity(v)
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := base64.RawURLEncoding.DecodeString(pid.SigB64)
		k := replayKey(pid.SigningInput(), sig)
		if i == 0 {
			want = k
		} else if k != want {
			t.Errorf("spelling %d has another key", i)
		}
	}
	again, _ := ParseIdentity(sign(t, p.key, testX5U, good())) // a new random nonce
	sig, _ := base64.RawURLEncoding.DecodeString(again.SigB64)
	if replayKey(again.SigningInput(), sig) == want {
		t.Error("a second signature of the same claims has the same key")
	}
	var claims passport.Claims = good()
	claims.Dest = []string{"12025550111"}
	other, _ := ParseIdentity(sign(t, p.key, testX5U, claims))
	sig, _ = base64.RawURLEncoding.DecodeString(other.SigB64)
	if replayKey(other.SigningInput(), sig) == want {
		t.Error("other claims have the same key")
	}
}

func TestLowS(t *testing.T) {
	n := new(big.Int).SetBytes(p256N[:])
	half := new(big.Int).Rsh(n, 1)
	for _, s := range []*big.Int{big.NewInt(1), big.NewInt(0x1234), half, new(big.Int).Add(half, big.NewInt(1)), new(big.Int).Sub(n, big.NewInt(1))} {
		got := new(big.Int).SetBytes(func() []byte { b := lowS(s.FillBytes(make([]byte, 32))); return b[:] }())
		want := s
		if s.Cmp(half) > 0 {
			want = new(big.Int).Sub(n, s)
		}
		if got.Cmp(want) != 0 {
			t.Errorf("lowS(%x) = %x, want %x", s, got, want)
		}
	}
}

func TestMemoryReplayWindow(t *testing.T) {
	ctx := context.Background()
	r := NewMemoryReplay()
	now := testNow
	ttl := time.Minute
	a := ReplayKey{1}
	if seen, _ := r.Seen(ctx, a, now); seen {
		t.Fatal("new key seen")
	}
	if seen, _ := r.Seen(ctx, a, now); seen {
		t.Fatal("Seen recorded the key")
	}
	if ok, _ := r.Claim(ctx, a, ttl, now); !ok {
		t.Fatal("first claim refused")
	}
	for _, at := range []time.Duration{0, 59 * time.Second, ttl + time.Second} {
		if seen, _ := r.Seen(ctx, a, now.Add(at)); !seen {
			t.Fatalf("key forgotten %s after its claim", at)
		}
		if ok, _ := r.Claim(ctx, a, ttl, now.Add(at)); ok {
			t.Fatalf("claimed again %s after its claim", at)
		}
	}
	if seen, _ := r.Seen(ctx, a, now.Add(4*ttl)); seen {
		t.Fatal("key kept after two windows")
	}
	if ok, _ := r.Claim(ctx, a, ttl, now.Add(4*ttl)); !ok {
		t.Fatal("expired key not claimable")
	}
}

// TestMemoryReplayClaimIsAtomic: of concurrent claims of one key exactly
// one wins (run with -race).
func TestMemoryReplayClaimIsAtomic(t *testing.T) {
	r := NewMemoryReplay()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := r.Claim(context.Background(), ReplayKey{7}, time.Minute, testNow); ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want 1", wins.Load())
	}
}

// BenchmarkReplayCheck is what the replay check adds to a verification:
// the key (SHA-256 of the token and its low-S signature), the read before
// the fetch and the claim after the signature, each call a new token.
//
//	go test ./verify -run '^$' -bench 'ReplayCheck' -benchmem
func BenchmarkReplayCheck(b *testing.B) {
	p := newPKI(b)
	id, err := ParseIdentity(sign(b, p.key, testX5U, good()))
	if err != nil {
		b.Fatal(err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(id.SigB64)
	r := NewMemoryReplay()
	ctx := context.Background()
	var i uint64
	b.ReportAllocs()
	for b.Loop() {
		i++
		k := replayKey(id.SigningInput(), sig)
		k[0], k[1], k[2], k[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24) // a new token each time
		if seen, _ := r.Seen(ctx, k, testNow); seen {
			b.Fatal("seen")
		}
		if ok, _ := r.Claim(ctx, k, time.Hour, testNow); !ok {
			b.Fatal("claimed")
		}
	}
}
