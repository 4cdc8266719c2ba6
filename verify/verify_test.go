package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/certs"
)

const (
	testX5U  = "https://cr.example.net/sp.pem"
	testOrig = "12025550199"
	testDest = "12025550100"
)

var testNow = time.Unix(1_800_000_000, 0)

// pki is a generated test STI PKI: signer key, chain and root pool.
type pki struct {
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate
	roots *x509.CertPool
}

func newPKI(t testing.TB) pki {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := certs.InitPKI(certs.InitOptions{Dir: dir, Now: testNow.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s, err := certs.LoadSigner(filepath.Join(dir, "sp.key"), filepath.Join(dir, "sp.pem"), testNow)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := certs.LoadTrustPool(filepath.Join(dir, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pki{key: s.Key, chain: s.Chain, roots: roots}
}

// mapSource serves chains from memory by URL (a CertSource without HTTP).
type mapSource map[string][]*x509.Certificate

func (m mapSource) Chain(_ context.Context, x5u string) ([]*x509.Certificate, error) {
	if c, ok := m[x5u]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("fetch %s: 404", x5u)
}

// poolCredentials checks chains with crypto/x509 against a root pool.
type poolCredentials struct{ roots *x509.CertPool }

func (p poolCredentials) Check(chain []*x509.Certificate, iat, now time.Time) (Credential, error) {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, at := range []time.Time{iat, now} {
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: p.roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return Credential{}, err
		}
	}
	return Credential{Key: chain[0].PublicKey.(*ecdsa.PublicKey), SPC: "TEST01"}, nil
}

func sign(t testing.TB, key *ecdsa.PrivateKey, x5u string, p passport.Claims) string {
	t.Helper()
	s, err := attest.NewSigner(key, x5u)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Sign(p)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func good() passport.Claims {
	return passport.Claims{Attest: passport.LevelA, Orig: testOrig, Dest: []string{testDest}, IAT: testNow.Unix(), OrigID: "3d9a1f0e-5b7c-4e2d-8a6f-1c0b9e8d7f6a"}
}

func newService(cfg Config, src CertSource, creds Credentials) *Service {
	cfg.Enabled, cfg.TrustRoots = true, []string{"x"}
	cfg.ApplyDefaults()
	return New(cfg, src, creds, NewMemoryReplay(), func() time.Time { return testNow })
}

// b64 re-encodes a JSON segment for hand-made tokens.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerify(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	src := mapSource{testX5U: p.chain, "https://other.example/sp.pem": other.chain}
	creds := poolCredentials{p.roots}
	valid := sign(t, p.key, testX5U, good())
	hdr, payload, _ := strings.Cut(valid, ".")
	payload, rest, _ := strings.Cut(payload, ".")
	sig, params, _ := strings.Cut(rest, ";")

	mod := func(f func(*passport.Claims)) string {
		pp := good()
		f(&pp)
		return sign(t, p.key, testX5U, pp)
	}
	tests := []struct {
		name     string
		cfg      Config
		in       Input
		wantCode int // 0 = passed
		wantKind error
	}{
		{"valid", Config{}, Input{testOrig, testDest, []string{valid}}, 0, nil},
		{"valid with folding and spaces", Config{}, Input{testOrig, testDest, []string{hdr + "." + payload + "." + sig + " ;\r\n\t" + params}}, 0, nil},
		{"anonymous caller", Config{}, Input{"", testDest, []string{valid}}, 433, ErrAnonymous},
		{"no Identity", Config{}, Input{testOrig, testDest, nil}, 428, ErrMissing},
		{"only another ppt", Config{}, Input{testOrig, testDest, []string{strings.Replace(valid, "ppt=shaken", "ppt=div", 1)}}, 428, ErrMissing},
		{"second header valid", Config{}, Input{testOrig, testDest, []string{"garbage", valid}}, 0, nil},
		{"compact form", Config{}, Input{testOrig, testDest, []string{".." + sig + ";" + params}}, 438, ErrMalformed},
		{"two segments", Config{}, Input{testOrig, testDest, []string{hdr + "." + payload + ";" + params}}, 438, ErrMalformed},
		{"no info", Config{}, Input{testOrig, testDest, []string{hdr + "." + payload + "." + sig + ";alg=ES256;ppt=shaken"}}, 438, ErrMalformed},
		{"alg param RS256", Config{}, Input{testOrig, testDest, []string{strings.Replace(valid, "alg=ES256", "alg=RS256", 1)}}, 437, ErrAlg},
		{"JOSE alg RS256", Config{}, Input{testOrig, testDest, []string{b64(`{"alg":"RS256","ppt":"shaken","typ":"passport","x5u":"`+testX5U+`"}`) + "." + payload + "." + sig + ";" + params}}, 437, ErrAlg},
		{"typ missing", Config{}, Input{testOrig, testDest, []string{b64(`{"alg":"ES256","ppt":"shaken","x5u":"`+testX5U+`"}`) + "." + payload + "." + sig + ";" + params}}, 438, ErrMalformed},
		{"x5u differs from info", Config{}, Input{testOrig, testDest, []string{strings.Replace(valid, "info=<"+testX5U, "info=<https://other.example/sp.pem", 1)}}, 438, ErrX5U},
		{"iat as a string", Config{}, Input{testOrig, testDest, []string{hdr + "." + b64(`{"attest":"A","dest":{"tn":["`+testDest+`"]},"iat":"1800000000","orig":{"tn":"`+testOrig+`"},"origid":"x"}`) + "." + sig + ";" + params}}, 438, ErrClaims},
		{"non-numeric orig", Config{}, Input{testOrig, testDest, []string{hdr + "." + b64(`{"attest":"A","dest":{"tn":["`+testDest+`"]},"iat":1800000000,"orig":{"tn":"alice"},"origid":"x"}`) + "." + sig + ";" + params}}, 438, ErrClaims},
		{"dest not an array", Config{}, Input{testOrig, testDest, []string{hdr + "." + b64(`{"attest":"A","dest":{"tn":"`+testDest+`"},"iat":1800000000,"orig":{"tn":"`+testOrig+`"},"origid":"x"}`) + "." + sig + ";" + params}}, 438, ErrClaims},
		{"attest D", Config{}, Input{testOrig, testDest, []string{hdr + "." + b64(`{"attest":"D","dest":{"tn":["`+testDest+`"]},"iat":1800000000,"orig":{"tn":"`+testOrig+`"},"origid":"x"}`) + "." + sig + ";" + params}}, 438, ErrClaims},
		{"stale", Config{}, Input{testOrig, testDest, []string{mod(func(p *passport.Claims) { p.IAT -= 61 })}}, 403, ErrStale},
		{"from the future", Config{}, Input{testOrig, testDest, []string{mod(func(p *passport.Claims) { p.IAT += 11 })}}, 403, ErrStale},
		{"within skew", Config{}, Input{testOrig, testDest, []string{mod(func(p *passport.Claims) { p.IAT += 9 })}}, 0, nil},
		{"orig mismatch", Config{}, Input{"12025550111", testDest, []string{valid}}, 438, ErrNumbers},
		{"dest mismatch", Config{}, Input{testOrig, "12025550111", []string{valid}}, 438, ErrNumbers},
		{"tampered signature", Config{}, Input{testOrig, testDest, []string{hdr + "." + payload + "." + strings.Repeat("A", 86) + ";" + params}}, 438, ErrSignature},
		{"signed by another key", Config{}, Input{testOrig, testDest, []string{sign(t, other.key, testX5U, good())}}, 438, ErrSignature},
		{"untrusted root", Config{}, Input{testOrig, testDest, []string{sign(t, other.key, "https://other.example/sp.pem", good())}}, 437, ErrCredential},
		{"unreachable x5u", Config{}, Input{testOrig, testDest, []string{sign(t, p.key, "https://gone.example/sp.pem", good())}}, 436, ErrInfo},
		{"min_attest B rejects C", Config{MinAttest: "B"}, Input{testOrig, testDest, []string{mod(func(p *passport.Claims) { p.Attest = passport.LevelC })}}, 403, ErrAttest},
		{"min_attest B passes B", Config{MinAttest: "B"}, Input{testOrig, testDest, []string{mod(func(p *passport.Claims) { p.Attest = passport.LevelB })}}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(tt.cfg, src, creds)
			v := s.Verify(context.Background(), tt.in)
			if tt.wantCode == 0 {
				if !v.Passed || v.Verstat != VerstatPassed || v.Attest == "" || v.OrigID == "" || v.X5U == "" {
					t.Fatalf("verdict %+v, want passed", v)
				}
				return
			}
			if v.Passed || v.Code != tt.wantCode || !errors.Is(v.Kind, tt.wantKind) {
				t.Fatalf("verdict %+v, want %d %v", v, tt.wantCode, tt.wantKind)
			}
		})
	}
}

func TestReplayIsRejected(t *testing.T) {
	p := newPKI(t)
	s := newService(Config{}, mapSource{testX5U: p.chain}, poolCredentials{p.roots})
	in := Input{testOrig, testDest, []string{sign(t, p.key, testX5U, good())}}
	if v := s.Verify(context.Background(), in); !v.Passed {
		t.Fatalf("first: %+v", v)
	}
	if v := s.Verify(context.Background(), in); v.Passed || v.Code != 438 || !errors.Is(v.Kind, ErrReplay) {
		t.Fatalf("second: %+v, want 438 replay", v)
	}
}

func FuzzParseIdentity(f *testing.F) {
	f.Add("eyJh.eyJi.c2ln;info=<https://x/y.pem>;alg=ES256;ppt=shaken")
	f.Add("a.b.c;info=<>")
	f.Add(";;;info=<;")
	f.Fuzz(func(t *testing.T, v string) {
		id, err := ParseIdentity(v)
		if err == nil && (id.Info == "" || id.SigningInput() == "" || strings.Count(id.JWS, ".") != 2) {
			t.Fatalf("accepted %q as %+v", v, id)
		}
	})
}

func FuzzDecodePASSporT(f *testing.F) {
	f.Add(b64(`{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://a/b"}`), b64(`{"attest":"A","dest":{"tn":["1"]},"iat":1,"orig":{"tn":"2"},"origid":"x"}`))
	f.Add("", "")
	f.Add(b64(`{"alg":1}`), b64(`{"iat":1e309,"dest":{"tn":[1]}}`))
	f.Fuzz(func(t *testing.T, h, c string) {
		if hd, err := DecodeHeader(h); err == nil && (hd.Alg != "ES256" || hd.X5U == "") {
			t.Fatalf("header accepted: %+v", hd)
		}
		if cl, err := DecodeClaims(c); err == nil && (cl.Orig == "" || len(cl.Dest) == 0 || cl.OrigID == "") {
			t.Fatalf("claims accepted: %+v", cl)
		}
	})
}

// BenchmarkVerifyCached is the verify stage with the certificate already
// fetched and checked (the cache is in the CertSource and Credentials);
// next to it, a raw P-256 ecdsa.Verify in the same run:
//
//	go test ./verify -run '^$' -bench 'Verify' -benchmem
func BenchmarkVerifyCached(b *testing.B) {
	p := newPKI(b)
	cred := Credential{Key: &p.key.PublicKey}
	s := New(Config{MaxAge: time.Hour, MaxSkew: time.Hour}, mapSource{testX5U: p.chain}, fixedCredentials{cred}, nil, func() time.Time { return testNow })
	in := Input{testOrig, testDest, []string{sign(b, p.key, testX5U, good())}}
	b.ReportAllocs()
	for b.Loop() {
		if v := s.Verify(context.Background(), in); !v.Passed {
			b.Fatal(v)
		}
	}
}

type fixedCredentials struct{ c Credential }

func (f fixedCredentials) Check([]*x509.Certificate, time.Time, time.Time) (Credential, error) {
	return f.c, nil
}

func BenchmarkRawECDSAVerifyP256(b *testing.B) {
	p := newPKI(b)
	digest := make([]byte, 32)
	sig, err := ecdsa.SignASN1(rand.Reader, p.key, digest)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&p.key.PublicKey, digest, sig) {
			b.Fatal("verify")
		}
	}
}

// BenchmarkVerifyCachedTrustStore is the verify stage as production runs it
// once the certificate is cached: the real certs.TrustStore (its
// verification cache hit) behind TrustCredentials.
func BenchmarkVerifyCachedTrustStore(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "pki")
	if err := certs.InitPKI(certs.InitOptions{Dir: dir, Now: testNow.Add(-time.Hour)}); err != nil {
		b.Fatal(err)
	}
	s, err := certs.LoadSigner(filepath.Join(dir, "sp.key"), filepath.Join(dir, "sp.pem"), testNow)
	if err != nil {
		b.Fatal(err)
	}
	store, err := certs.NewTrustStore([]string{filepath.Join(dir, "root.pem")}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	svc := New(Config{MaxAge: time.Hour, MaxSkew: time.Hour}, StaticSource(s.Chain), TrustCredentials{Store: store}, nil, func() time.Time { return testNow })
	in := Input{testOrig, testDest, []string{sign(b, s.Key, testX5U, good())}}
	b.ReportAllocs()
	for b.Loop() {
		if v := svc.Verify(context.Background(), in); !v.Passed {
			b.Fatal(v)
		}
	}
}
