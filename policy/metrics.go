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
	storeFail   *prometheus.CounterVec // rule, on_store_error
	// roundTrips per phase (stage label policy, policy.verified).
	roundTrips [2]prometheus.Observer
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
		storeFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_policy_store_fail_total",
			Help: "Calls decided by a rule's on_store_error because its store failed, by rule and the mode applied: open (the call went on; report-mode rules always) or closed (rejected).",
		}, []string{"rule", "on_store_error"}),
	}
	trips := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "stirgate_policy_store_round_trips",
		Help: "Store round trips one call waited for in one policy stage, by stage: the stage's store operations go in one batch (Redis: one round trip, on a Cluster one per node in parallel; 0 on Memory or when the client-side cache answered); a second only when a protect rule turns protect mode on or Redis lost its scripts.",
		// Integers: le=1 counts the calls with at most one round trip.
		Buckets: []float64{0, 1, 2, 3},
	}, []string{"stage"})
	m.roundTrips[PhaseEarly] = trips.WithLabelValues(Handler{Phase: PhaseEarly}.Name())
	m.roundTrips[PhaseVerified] = trips.WithLabelValues(Handler{Phase: PhaseVerified}.Name())
	if reg != nil {
		reg.MustRegister(m.hits, m.flagged, m.complaints, m.storeErrors, m.storeFail, trips)
	}
	return m
}

// stage records the store round trips of one call in one stage.
func (m *Metrics) stage(phase Phase, trips int) {
	if m != nil {
		m.roundTrips[phase].Observe(float64(trips))
	}
}

func (m *Metrics) observe(h Hit) {
	if m == nil {
		return
	}
	m.hits.WithLabelValues(h.Rule, h.Mode, h.Action).Inc()
	if h.Action == ActionStoreError {
		m.storeErrors.Inc()
		mode := "open"
		if h.failClosed {
			mode = "closed"
		}
		m.storeFail.WithLabelValues(h.Rule, mode).Inc()
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
