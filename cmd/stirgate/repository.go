package main

import (
	"net/http"
	"sync"
)

// x5uRepository publishes the signing certificate chain at the x5u URL's
// path on the admin server; a reload swaps the chain in place.
type x5uRepository struct {
	mu      sync.RWMutex
	urlPath string
	handler http.Handler
}

// publish serves the chain of s (nil: signing disabled, keep serving what
// was published so in-flight verifications still find it).
func (r *x5uRepository) publish(s *signing) {
	if s == nil {
		return
	}
	r.mu.Lock()
	r.urlPath, r.handler = s.x5uPath, s.chain
	r.mu.Unlock()
}

func (r *x5uRepository) path() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.urlPath
}

func (r *x5uRepository) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.RLock()
	h := r.handler
	r.mu.RUnlock()
	if h == nil || req.URL.Path != r.path() {
		http.NotFound(w, req)
		return
	}
	h.ServeHTTP(w, req)
}
