package certs

import (
	"bytes"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRepositoryServes(t *testing.T) {
	p := newPKI(t, InitOptions{})
	chain := readFile(t, p.path(FileSPCert))
	h, err := NewRepository(chain, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/certs/sp.pem")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	wantHeaders := map[string]string{
		"Content-Type":           "application/pem-certificate-chain",
		"Cache-Control":          "public, max-age=3600",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range wantHeaders {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	etag := resp.Header.Get("ETag")
	if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Errorf("ETag %q is not a quoted strong tag", etag)
	}
	if !bytes.Equal(body, chain) {
		t.Fatal("body is not the chain")
	}
	if _, parsed, err := ParseChainPEM(body); err != nil || len(parsed) != 2 {
		t.Fatalf("served chain does not parse: %v", err)
	}

	tests := []struct {
		name     string
		method   string
		header   map[string]string
		status   int
		wantBody bool
	}{
		{"HEAD", http.MethodHead, nil, http.StatusOK, false},
		{"conditional GET, same ETag", http.MethodGet, map[string]string{"If-None-Match": etag}, http.StatusNotModified, false},
		{"conditional GET, other ETag", http.MethodGet, map[string]string{"If-None-Match": `"other"`}, http.StatusOK, true},
		{"POST", http.MethodPost, nil, http.StatusMethodNotAllowed, false},
		{"PUT", http.MethodPut, nil, http.StatusMethodNotAllowed, false},
		{"DELETE", http.MethodDelete, nil, http.StatusMethodNotAllowed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/certs/sp.pem", nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Body.Len() > 0 && bytes.Equal(rec.Body.Bytes(), chain); got != tt.wantBody {
				t.Fatalf("body served = %v, want %v", got, tt.wantBody)
			}
			switch tt.status {
			case http.StatusMethodNotAllowed:
				if rec.Header().Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow = %q", rec.Header().Get("Allow"))
				}
			case http.StatusOK:
				if tt.method == http.MethodHead && rec.Header().Get("Content-Length") == "" {
					t.Error("HEAD without Content-Length")
				}
				fallthrough
			case http.StatusNotModified:
				if rec.Header().Get("ETag") != etag || rec.Header().Get("Cache-Control") != "public, max-age=3600" {
					t.Errorf("headers %v", rec.Header())
				}
			}
		})
	}
}

func TestRepositoryRefusesPrivateKeys(t *testing.T) {
	p := newPKI(t, InitOptions{})
	chain := readFile(t, p.path(FileSPCert))
	key := readFile(t, p.path(FileSPKey))
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	tests := []struct {
		name   string
		data   []byte
		maxAge time.Duration
		want   error
	}{
		{"PKCS#8 key after chain", append(append([]byte{}, chain...), key...), time.Hour, ErrPrivateKeyInChain},
		{"key only", key, time.Hour, ErrPrivateKeyInChain},
		{"SEC1 key before chain", append(append([]byte{}, sec1...), chain...), time.Hour, ErrPrivateKeyInChain},
		{"malformed key block", append(append([]byte{}, chain...), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nxx"...), time.Hour, ErrPrivateKeyInChain},
		{"empty", nil, time.Hour, ErrNoCertificates},
		{"not PEM", []byte("hello"), time.Hour, ErrNoCertificates},
		{"other block", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), time.Hour, ErrUnexpectedPEM},
		{"negative max-age", chain, -time.Second, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewRepository(tt.data, tt.maxAge)
			if err == nil || h != nil {
				t.Fatalf("NewRepository = %v, %v; want an error", h, err)
			}
			if tt.want != errAny && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "MIG") {
				t.Fatalf("error leaks PEM content: %v", err)
			}
		})
	}
}

func TestRepositoryUpdate(t *testing.T) {
	a := newPKI(t, InitOptions{})
	b := newPKI(t, InitOptions{SPC: "OTHER"})
	chainA := readFile(t, a.path(FileSPCert))
	chainB := readFile(t, b.path(FileSPCert))
	r, err := NewSwapRepository(chainA, 0)
	if err != nil {
		t.Fatal(err)
	}
	get := func() (string, []byte, string) {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sp.pem", nil))
		return rec.Header().Get("ETag"), rec.Body.Bytes(), rec.Header().Get("Cache-Control")
	}
	etagA, body, cc := get()
	if !bytes.Equal(body, chainA) || cc != "public, max-age=0" || etagA != r.ETag() {
		t.Fatalf("before update: cc=%q etag=%q", cc, etagA)
	}
	if err := r.Update(chainB); err != nil {
		t.Fatal(err)
	}
	etagB, body, _ := get()
	if !bytes.Equal(body, chainB) || etagB == etagA {
		t.Fatal("update did not take effect")
	}
	// A refused update keeps the old chain.
	bad := append(append([]byte{}, chainA...), readFile(t, a.path(FileSPKey))...)
	if err := r.Update(bad); !errors.Is(err, ErrPrivateKeyInChain) {
		t.Fatalf("Update with key: %v", err)
	}
	if etag, body, _ := get(); etag != etagB || !bytes.Equal(body, chainB) {
		t.Fatal("refused update changed what is served")
	}

	// Concurrent reads and swaps (run with -race).
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if i == 0 && j%5 == 0 {
					next := chainA
					if j%10 == 0 {
						next = chainB
					}
					if err := r.Update(next); err != nil {
						t.Error(err)
					}
					continue
				}
				_, body, _ := get()
				if !bytes.Equal(body, chainA) && !bytes.Equal(body, chainB) {
					t.Error("torn body")
				}
			}
		}()
	}
	wg.Wait()
}
