package verify

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the verification service; created once and shared by every
// configuration generation.
type Metrics struct {
	results *prometheus.CounterVec // verstat, reason
}

// NewMetrics registers the verification metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_verify_results_total",
		Help: "Verification results of inbound INVITEs, by verstat and failure reason (\"ok\" when passed).",
	}, []string{"verstat", "reason"})}
	if reg != nil {
		reg.MustRegister(m.results)
	}
	return m
}

func (m *Metrics) observe(verstat, reason string) {
	if m != nil {
		m.results.WithLabelValues(verstat, reason).Inc()
	}
}
