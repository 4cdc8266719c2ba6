package sip

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the edge. Labels are bounded: realm (2), method (parsed methods
// are folded to "other" when unknown), status (100-699), stage (config).
type metrics struct {
	requests   *prometheus.CounterVec   // realm, method
	responses  *prometheus.CounterVec   // realm, method, status
	inProgress *prometheus.GaugeVec     // realm
	inviteTime *prometheus.HistogramVec // realm
	stages     *prometheus.CounterVec   // realm, stage, decision
	dropped    *prometheus.CounterVec   // realm, reason
	dialogs    prometheus.Gauge
	draining   prometheus.Gauge
	queueWait  *prometheus.HistogramVec // realm
	shed       *prometheus.CounterVec   // realm, where
	admitRatio prometheus.Gauge

	announceStarted *prometheus.CounterVec // realm
	announceEnded   *prometheus.CounterVec // realm, result
	announceRefused *prometheus.CounterVec // realm, reason
	rtpPackets      *prometheus.CounterVec // realm
	rtpLate         *prometheus.CounterVec // realm

	tlsConns      *prometheus.GaugeVec   // realm
	tlsHandshakes *prometheus.CounterVec // realm, result
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_sip_requests_total",
			Help: "SIP requests received, by realm and method.",
		}, []string{"realm", "method"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_sip_responses_total",
			Help: "SIP responses sent upstream, relayed or our own (with the 200 sipgo sends for a matching CANCEL; without 100 Trying, retransmissions and the stateless 400 sipgo sends to a request it cannot key), by realm the request came from, method and status.",
		}, []string{"realm", "method", "status"}),
		inProgress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stirgate_calls_in_progress",
			Help: "Initial INVITE transactions not yet answered with a final response.",
		}, []string{"realm"}),
		inviteTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stirgate_invite_final_seconds",
			Help:    "Time from an initial INVITE received to its final response sent upstream.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180},
		}, []string{"realm"}),
		stages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_stage_decisions_total",
			Help: "Decisions of call pipeline stages (pass or reject), by realm and stage.",
		}, []string{"realm", "stage", "decision"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_sip_dropped_total",
			Help: "SIP messages dropped without a response, by realm and reason.",
		}, []string{"realm", "reason"}),
		dialogs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stirgate_dialogs_active",
			Help: "Confirmed dialogs (2xx to INVITE seen, BYE not yet answered).",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stirgate_draining",
			Help: "1 while the process drains after SIGTERM.",
		}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stirgate_sip_queue_wait_seconds",
			Help:    "Queue wait of initial INVITEs: from their arrival in the kernel (UDP; the read, for TCP) to the start of their pipeline.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .02, .04, .1, .25, .5, 1, 2.5, 5},
		}, []string{"realm"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_sip_overload_shed_total",
			Help: "New INVITEs answered 503 for overload, by realm and where: reader (not admitted, stateless from the socket reader) or late (waited more than twice sip.overload.target_wait).",
		}, []string{"realm", "where"}),
		admitRatio: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stirgate_sip_overload_admit_ratio",
			Help: "Fraction of new UDP INVITEs the socket readers admit (1: no overload).",
		}),
	}
	m.announceStarted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_announcements_started_total",
		Help: "Announcements started (183 with SDP sent, RTP playing), by realm.",
	}, []string{"realm"})
	m.announceEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_announcements_ended_total",
		Help: "Announcements ended, by realm and result: completed (played to the end, then the rejection), cancelled (the caller's CANCEL), stopped (the transaction or the node ended).",
	}, []string{"realm", "result"})
	m.announceRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_announcements_refused_total",
		Help: "Rejections whose announcement was not played (the caller got the plain rejection), by realm and reason: cap, ports, no_media, no_offer, bad_offer, no_audio, no_codec, hold, 100rel.",
	}, []string{"realm", "reason"})
	m.rtpPackets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_rtp_packets_sent_total",
		Help: "RTP packets of announcements sent, by realm (counted when each stream ends).",
	}, []string{"realm"})
	m.rtpLate = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_rtp_late_packets_total",
		Help: "RTP packets of announcements sent more than 5 ms after their time, by realm (counted when each stream ends).",
	}, []string{"realm"})
	m.tlsConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stirgate_tls_connections_open",
		Help: "TLS connections open on the realm's tls listeners (accepted, not yet closed).",
	}, []string{"realm"})
	m.tlsHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stirgate_tls_handshakes_total",
		Help: "TLS handshakes on the realm's tls listeners, by result: ok, or why it failed: expired, unknown_ca, bad_certificate, no_client_cert, not_tls, timeout, other.",
	}, []string{"realm", "result"})
	m.admitRatio.Set(1)
	if reg != nil {
		reg.MustRegister(m.requests, m.responses, m.inProgress, m.inviteTime, m.stages, m.dropped, m.dialogs, m.draining,
			m.queueWait, m.shed, m.admitRatio, m.announceStarted, m.announceEnded, m.announceRefused, m.rtpPackets, m.rtpLate,
			m.tlsConns, m.tlsHandshakes)
	}
	return m
}

var knownMethods = map[string]bool{
	"INVITE": true, "ACK": true, "BYE": true, "CANCEL": true, "OPTIONS": true,
	"REGISTER": true, "PRACK": true, "UPDATE": true, "INFO": true, "MESSAGE": true,
	"SUBSCRIBE": true, "NOTIFY": true, "REFER": true, "PUBLISH": true,
}

// methodLabel keeps the label set bounded against arbitrary methods.
func methodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return "other"
}

func statusLabel(code int) string {
	if code < 100 || code > 699 {
		return "other"
	}
	return strconv.Itoa(code)
}
