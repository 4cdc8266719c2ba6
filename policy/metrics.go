package policy

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the policy engine; created once and shared by every
// configuration generation. Label values come from the policy files (rule
// names), so their number is bounded by the admin, not by callers.
type Metrics struct {
	hits        *prometheus.CounterVec // rule, mode, action
	flagged     *prometheus.CounterVec // rule
	complaints  *prometheus.CounterVec // subject kind
	storeErrors prometheus.Counter
}

// NewMetrics registers the policy metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_policy_hits_total",
			Help: "Policy rule hits, by rule, mode (enforce|report) and action (allow|reject|tag|store_error).",
		}, []string{"rule", "mode", "action"}),
		flagged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_policy_one_ring_flagged_total",
			Help: "Callers marked as one-ring (Wangiri), by rule; a report-mode rule counts the callers it would have marked.",
		}, []string{"rule"}),
		complaints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_policy_complaints_total",
			Help: "607 Unwanted complaints recorded, by subject (caller: A-verified calling number; trunk: the source).",
		}, []string{"subject"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stirgate_policy_store_errors_total",
			Help: "Policy store operations that failed: on the call path (also a store_error hit; the rule's on_store_error let the call through or rejected it), releasing a concurrent-call slot, or learning from how a call ended.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.flagged, m.complaints, m.storeErrors)
	}
	return m
}

func (m *Metrics) observe(h Hit) {
	if m == nil {
		return
	}
	m.hits.WithLabelValues(h.Rule, h.Mode, h.Action).Inc()
	if h.Action == ActionStoreError {
		m.storeErrors.Inc()
	}
}

func (m *Metrics) learned(l Learned) {
	if m == nil {
		return
	}
	if l.Flagged != "" {
		m.flagged.WithLabelValues(l.FlagRule).Inc()
	}
	if l.Complaint != "" {
		kind := "caller"
		if strings.HasPrefix(l.Complaint, keyComplaint) {
			kind = "trunk"
		}
		m.complaints.WithLabelValues(kind).Inc()
	}
	m.storeFailures(l.StoreErrors)
}

func (m *Metrics) storeFailures(n int) {
	if m != nil && n > 0 {
		m.storeErrors.Add(float64(n))
	}
}
