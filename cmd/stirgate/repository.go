package main

import (
	"net/http"
	"sync"
	"time"
)

// minKeepOld is the least time a replaced chain stays published: a call
// signed just before a rotation may still be verified (verify.max_age) by
// a verifier that fetches its x5u only then.
const minKeepOld = 5 * time.Minute

// x5uRepository publishes signing certificate chains at the paths of
// their x5u URLs on the admin server. A reload that moves attest.x5u (the
// way to rotate keys: verifiers cache a chain by its URL) publishes the new
// chain at its path and keeps the old one at its own for the old
// attest.cert_max_age (at least minKeepOld): verifiers that fetch it late
// still find it, and none is ever served a key that did not sign the call.
type x5uRepository struct {
	mu      sync.RWMutex
	current *signing
	retired map[string]retiredChain // by path
	now     func() time.Time        // nil: time.Now
}

type retiredChain struct {
	handler http.Handler
	until   time.Time
}

// publish serves the chain of s at its path (nil: signing disabled, keep
// serving what was published so in-flight verifications still find it).
func (r *x5uRepository) publish(s *signing) {
	if s == nil {
		return
	}
	now := r.clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.current; old != nil && old.x5uPath != s.x5uPath {
		if r.retired == nil {
			r.retired = map[string]retiredChain{}
		}
		r.retired[old.x5uPath] = retiredChain{handler: old.chain, until: now.Add(max(old.maxAge, minKeepOld))}
	}
	delete(r.retired, s.x5uPath)
	for p, c := range r.retired {
		if now.After(c.until) {
			delete(r.retired, p)
		}
	}
	r.current = s
}

// signing is the signing generation whose chain is published now (nil:
// none yet).
func (r *x5uRepository) signing() *signing {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.current
}

func (r *x5uRepository) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// ServeHTTP serves the chain published at the request's path; 404 for any
// other path (the admin mux routes every unclaimed path here).
func (r *x5uRepository) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var h http.Handler
	r.mu.RLock()
	if cur := r.current; cur != nil && req.URL.Path == cur.x5uPath {
		h = cur.chain
	} else if c, ok := r.retired[req.URL.Path]; ok && !r.clock().After(c.until) {
		h = c.handler
	}
	r.mu.RUnlock()
	if h == nil {
		http.NotFound(w, req)
		return
	}
	h.ServeHTTP(w, req)
}
