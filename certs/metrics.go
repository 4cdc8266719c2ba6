package certs

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of Fetch, the values of the result label of
// stirgate_x5u_fetches_total. One Fetch call counts once.
const (
	resOK          = "ok"           // fetched over the network (also for callers that shared the flight)
	resCacheHit    = "cache_hit"    // served from the cache
	resNegativeHit = "negative_hit" // a cached failure
	resPolicy      = "policy"       // ErrURLPolicy
	resAddress     = "address"      // ErrAddressDenied
	resTimeout     = "timeout"      // ErrFetch: the fetch or the caller's ctx timed out
	resCanceled    = "canceled"     // ErrFetch: the caller's ctx was cancelled
	resStatus      = "status"       // ErrFetch: not 200 (and not 3xx)
	resNetwork     = "network"      // ErrFetch: DNS, connect, TLS, reset…
	resBusy        = "busy"         // ErrFetch: MaxInFlight fetches already running
	resTooLarge    = "too_large"    // ErrTooLarge
	resRedirect    = "redirect"     // ErrRedirect
	resCircuitOpen = "circuit_open" // ErrCircuitOpen
	resBadChain    = "bad_chain"    // ErrBadChain
)

var fetchResults = []string{
	resOK, resCacheHit, resNegativeHit, resPolicy, resAddress, resTimeout, resCanceled,
	resStatus, resNetwork, resBusy, resTooLarge, resRedirect, resCircuitOpen, resBadChain,
}

// fetchMetrics of the x5u fetcher:
//
//	stirgate_x5u_fetches_total{result}   counter, results above
//	stirgate_x5u_cache_entries           gauge: chains and failures cached
//	stirgate_x5u_fetch_seconds           histogram: network fetches
type fetchMetrics struct {
	fetches  *prometheus.CounterVec
	byResult map[string]prometheus.Counter // resolved once: no label hashing per call
	entries  prometheus.Gauge
	duration prometheus.Histogram
}

func newFetchMetrics(reg prometheus.Registerer) (*fetchMetrics, error) {
	m := &fetchMetrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_x5u_fetches_total",
			Help: "x5u certificate fetches by result (ok, cache_hit, negative_hit, policy, address, timeout, canceled, status, network, busy, too_large, redirect, circuit_open, bad_chain).",
		}, []string{"result"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stirgate_x5u_cache_entries",
			Help: "x5u cache entries (certificate chains and cached failures).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stirgate_x5u_fetch_seconds",
			Help:    "Duration of x5u network fetches (cache misses), whatever their result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}),
	}
	if reg != nil {
		if err := register(reg, &m.fetches); err != nil {
			return nil, err
		}
		if err := register(reg, &m.entries); err != nil {
			return nil, err
		}
		if err := register(reg, &m.duration); err != nil {
			return nil, err
		}
	}
	m.byResult = make(map[string]prometheus.Counter, len(fetchResults))
	for _, r := range fetchResults {
		m.byResult[r] = m.fetches.WithLabelValues(r) // also makes every series visible at 0
	}
	return m, nil
}

// register registers *c, or replaces it with the collector already
// registered under the same description (a second fetcher on a registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			*c = existing
			return nil
		}
	}
	return err
}

func (m *fetchMetrics) count(result string) {
	if c := m.byResult[result]; c != nil {
		c.Inc()
	}
}
