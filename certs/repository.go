package certs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// ContentTypePEMChain is the media type of an x5u response (RFC 8555 §9.1,
// ATIS-1000074).
const ContentTypePEMChain = "application/pem-certificate-chain"

// Repository serves one certificate chain at whatever path it is mounted on
// (the x5u URL): GET and HEAD only, Content-Type
// application/pem-certificate-chain, Cache-Control "public, max-age=N", a
// strong ETag, conditional requests. 404 for other paths is the mux's
// business. Update swaps the chain atomically (SIGHUP rotation) without
// restarting the HTTP server; in-flight requests finish with the old one.
type Repository struct {
	maxAge time.Duration
	cur    atomic.Pointer[repoChain]
}

type repoChain struct {
	body    []byte
	etag    string
	modTime time.Time
}

// NewRepository returns a handler serving chainPEM (see Repository). It
// refuses bytes that contain a private key, that hold anything other than
// certificates, or no certificate; and a negative maxAge.
func NewRepository(chainPEM []byte, maxAge time.Duration) (http.Handler, error) {
	r, err := NewSwapRepository(chainPEM, maxAge)
	if err != nil {
		return nil, err // not a typed nil *Repository in the interface
	}
	return r, nil
}

// NewSwapRepository is NewRepository returning the concrete type, for Update.
func NewSwapRepository(chainPEM []byte, maxAge time.Duration) (*Repository, error) {
	if maxAge < 0 {
		return nil, fmt.Errorf("certs: repository: negative max-age %v", maxAge)
	}
	r := &Repository{maxAge: maxAge}
	if err := r.Update(chainPEM); err != nil {
		return nil, err
	}
	return r, nil
}

// Update replaces the chain served, after the same checks as NewRepository.
// On error the old chain keeps being served.
func (r *Repository) Update(chainPEM []byte) error {
	body, _, err := ParseChainPEM(chainPEM)
	if err != nil {
		return fmt.Errorf("certs: repository: %w", err)
	}
	sum := sha256.Sum256(body)
	r.cur.Store(&repoChain{
		body:    body,
		etag:    `"` + hex.EncodeToString(sum[:16]) + `"`,
		modTime: time.Now().UTC().Truncate(time.Second),
	})
	return nil
}

// ETag returns the current chain's ETag (quoted).
func (r *Repository) ETag() string { return r.cur.Load().etag }

// ServeHTTP implements http.Handler.
func (r *Repository) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c := r.cur.Load()
	h := w.Header()
	h.Set("Content-Type", ContentTypePEMChain)
	h.Set("Cache-Control", "public, max-age="+strconv.FormatInt(int64(r.maxAge/time.Second), 10))
	h.Set("ETag", c.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	// ServeContent handles HEAD, If-None-Match / If-Modified-Since (304),
	// Range and Content-Length.
	http.ServeContent(w, req, "", c.modTime, bytes.NewReader(c.body))
}
