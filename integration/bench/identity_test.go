package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/certs"
)

// benchPKI makes a test PKI whose sp.pem an HTTP server on loopback serves
// at the returned env's x5u, and a bench signing with its key.
func benchPKI(t *testing.T) *bench {
	t.Helper()
	dir := t.TempDir()
	e := &env{pki: filepath.Join(dir, "pki")}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		http.ServeFile(w, r, filepath.Join(e.pki, "sp.pem"))
	}))
	t.Cleanup(srv.Close)
	opt := certs.InitOptions{Dir: e.pki, X5UBase: srv.URL + "/certs/"}
	if err := certs.InitPKI(opt); err != nil {
		t.Fatal(err)
	}
	e.x5u = opt.X5U()
	s, err := certs.LoadSigner(filepath.Join(e.pki, "sp.key"), filepath.Join(e.pki, "sp.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{env: e}
	if b.signer, err = attest.NewSigner(s.Key, e.x5u); err != nil {
		t.Fatal(err)
	}
	return b
}

// signedHeaders returns n full Identity values as the bench signs them.
func signedHeaders(t *testing.T, b *bench, n int) []string {
	t.Helper()
	path, err := b.identities(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, jws := range strings.Split(strings.TrimSpace(string(raw)), "\n")[1:] { // after SEQUENTIAL
		out = append(out, jws+";info=<"+b.env.x5u+">;alg=ES256;ppt=shaken")
	}
	return out
}

// TestCheckIdentities: the sign-mode step is clean only when the callee's
// sample is what a signing proxy sends: every header verifies with
// secsipidx and each call has its own. A constant string of the right
// shape, one valid header replayed for every call, a broken signature or
// another key's signature, and an empty sample each make the step unclean.
func TestCheckIdentities(t *testing.T) {
	if _, err := secsipidx(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	since := time.Now()
	b := benchPKI(t)
	other := benchPKI(t)
	good := signedHeaders(t, b, 30)
	// Signed with the other PKI's key but naming our x5u: only the
	// signature can tell.
	key, err := certs.LoadSigner(filepath.Join(other.env.pki, "sp.key"), filepath.Join(other.env.pki, "sp.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other.env.x5u = b.env.x5u
	if other.signer, err = attest.NewSigner(key.Key, b.env.x5u); err != nil {
		t.Fatal(err)
	}
	foreign := signedHeaders(t, other, 30)
	var tampered []string
	for _, id := range good {
		jws, params, _ := strings.Cut(id, ";")
		tampered = append(tampered, jws[:len(jws)-6]+"AAAAAA;"+params)
	}
	repeat := func(id string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = id
		}
		return out
	}
	tests := []struct {
		name     string
		logged   []string
		wantErr  string // "" = clean
		verified int
	}{
		{"signed, one header per call", good, "", identitySampleMax},
		{"a constant string of the right shape", repeat("eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln;info=<"+b.env.x5u+">;alg=ES256;ppt=shaken", 30), "attest", 0},
		{"one valid header for every call", repeat(good[0], 30), "share origid", 0},
		{"signature broken", tampered, "secsipidx refused 20 of 20", 0},
		{"signed with another key", foreign, "secsipidx refused 20 of 20", 0},
		{"nothing logged", nil, "logged no Identity", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var log strings.Builder
			for _, id := range tt.logged {
				log.WriteString(" " + id + "\n") // as SIPp's <log> writes it
			}
			path := filepath.Join(dir, identityLog)
			if err := os.WriteFile(path, []byte(log.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := b.env.checkIdentities(context.Background(), path, since, time.Minute)
			t.Logf("sample %+v: %v", got, err)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unclean: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
			if got.Logged != len(tt.logged) || got.Verified != tt.verified {
				t.Errorf("sample %+v, want %d logged and %d verified", got, len(tt.logged), tt.verified)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	for _, tt := range []struct {
		n, limit int
		want     string
	}{
		{0, 3, "[]"},
		{2, 3, "[0 1]"},
		{3, 3, "[0 1 2]"},
		{10, 3, "[0 4 9]"},
		{31, 4, "[0 10 20 30]"},
	} {
		if got := fmt.Sprint(spread(tt.n, tt.limit)); got != tt.want {
			t.Errorf("spread(%d, %d) = %s, want %s", tt.n, tt.limit, got, tt.want)
		}
	}
}
