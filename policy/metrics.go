package policy

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the policy engine; created once and shared by every
// configuration generation. Label values come from the policy files (rule
// names), so their number is bounded by the admin, not by callers.
type Metrics struct {
	hits *prometheus.CounterVec // rule, mode, action
}

// NewMetrics registers the policy metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{hits: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_policy_hits_total",
		Help: "Policy rule hits, by rule, mode (enforce|report) and action (allow|reject|tag|store_error).",
	}, []string{"rule", "mode", "action"})}
	if reg != nil {
		reg.MustRegister(m.hits)
	}
	return m
}

func (m *Metrics) observe(h Hit) {
	if m != nil {
		m.hits.WithLabelValues(h.Rule, h.Mode, h.Action).Inc()
	}
}
