package store

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// Redis operation names: the op label of stirgate_state_redis_seconds.
const (
	opCounterAdd         = "counter_add"
	opCounterCount       = "counter_count"
	opDistinctAdd        = "distinct_add"
	opFlagsSet           = "flags_set"
	opFlagsGet           = "flags_get"
	opComplaintsAdd      = "complaints_add"
	opComplaintsCount    = "complaints_count"
	opConcurrencyAcquire = "concurrency_acquire"
	opConcurrencyRelease = "concurrency_release"
	opOnceSeen           = "once_seen"
	opOnceClaim          = "once_claim"
	opBatch              = "batch" // a Batch: its operations in one round trip
)

var redisOps = []string{
	opCounterAdd, opCounterCount, opDistinctAdd, opFlagsSet, opFlagsGet,
	opComplaintsAdd, opComplaintsCount, opConcurrencyAcquire, opConcurrencyRelease,
	opOnceSeen, opOnceClaim, opBatch,
}

// Error kinds: the kind label of stirgate_state_redis_errors_total.
const (
	errKindTimeout    = "timeout"    // the operation's deadline passed
	errKindConnection = "connection" // no connection: refused, reset, closed
	errKindScript     = "script"     // Redis answered with an error
	errKindOther      = "other"      // anything else (a cancelled caller, a bad reply)
)

var redisErrKinds = []string{errKindTimeout, errKindConnection, errKindScript, errKindOther}

// redisMetrics are the Redis store's metrics. They always exist (tests read
// them); NewRedis registers them only when given a Registerer.
type redisMetrics struct {
	seconds *prometheus.HistogramVec // op
	errors  *prometheus.CounterVec   // kind
	// Flags.Get through the client-side cache: answered locally, or not.
	cacheHits, cacheMisses prometheus.Counter
}

func newRedisMetrics(reg prometheus.Registerer) (*redisMetrics, error) {
	m := &redisMetrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stirgate_state_redis_seconds",
			Help: "Duration of one Redis store operation (one round trip), or of one batch of operations (op batch: one round trip, two when a script must be sent again), failed ones included, by op.",
			// Loopback is ~50-200µs, a LAN ~0.3-1ms, the deadline a few ms.
			Buckets: []float64{0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stirgate_state_redis_errors_total",
			Help: "Failed Redis store operations by kind: timeout (deadline passed), connection (refused, reset, closed), script (Redis answered with an error), other.",
		}, []string{"kind"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stirgate_state_cache_hits_total",
			Help: "Flag reads (one-ring mark, protect mode) answered from the client-side cache that Redis invalidates, without a round trip.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stirgate_state_cache_misses_total",
			Help: "Flag reads (one-ring mark, protect mode) that went to Redis: not in the client-side cache, expired, or invalidated.",
		}),
	}
	for _, op := range redisOps {
		m.seconds.WithLabelValues(op)
	}
	for _, k := range redisErrKinds {
		m.errors.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.seconds, m.errors, m.cacheHits, m.cacheMisses} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// errKind classifies a failed operation for the errors metric.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return errKindTimeout
	}
	if _, ok := rueidis.IsRedisErr(err); ok {
		return errKindScript
	}
	var oe *net.OpError
	switch {
	case errors.As(err, &oe),
		errors.Is(err, rueidis.ErrClosing), errors.Is(err, rueidis.ErrNoAddr), errors.Is(err, ErrNotConnected),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errKindConnection
	}
	return errKindOther
}
