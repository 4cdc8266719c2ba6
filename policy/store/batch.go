package store

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// OpKind names the structure method an Op runs.
type OpKind uint8

// The operations a batch can hold: every Store method but Close.
const (
	OpCounterAdd         OpKind = iota + 1 // Counter.Add(Key, N, Window)
	OpCounterCount                         // Counter.Count(Key, Window)
	OpDistinctAdd                          // Distinct.Add(Key, Member, Window)
	OpFlagsSet                             // Flags.Set(Key, ttl Window)
	OpFlagsGet                             // Flags.Get(Key)
	OpComplaintsAdd                        // Complaints.Add(Key, at now)
	OpComplaintsCount                      // Complaints.Count(Key, Window)
	OpConcurrencyAcquire                   // Concurrency.Acquire(Key, Member, ttl Window)
	OpConcurrencyRelease                   // Concurrency.Release(Key, Member)
)

// Op is one store operation of a batch, with the arguments of its method
// (now is the batch's).
type Op struct {
	Kind   OpKind
	Key    string
	Member string        // Distinct, Concurrency
	N      int           // Counter.Add: events
	Window time.Duration // the window, or the ttl of Flags.Set and Concurrency.Acquire
}

// Result is what one Op's method returned: N for counts, Until and OK for
// Flags.Get, Err for any failure (then the rest is zero).
type Result struct {
	N     int
	Until time.Time
	OK    bool
	Err   error
}

// Batcher is a Store that runs several operations together: Redis sends a
// batch in one write and reads every reply in one network round trip
// (on a Cluster one per node the batch touches, sent in parallel). Memory
// is not one: Run runs its operations one by one, in order.
type Batcher interface {
	// Batch runs ops at now, each exactly as its method would, and writes
	// their results to res (len(res) == len(ops)). The operations are
	// independent: each is atomic on its own (not the batch), and they
	// run in order except that a Flags.Get may be answered (from the
	// client-side cache) beside the others, so a batch must not read a
	// flag it also sets. It returns the network round trips it waited for
	// (0 when every reply came from the client-side cache).
	Batch(ctx context.Context, ops []Op, now time.Time, res []Result) (roundTrips int)
}

// Run runs ops on st as one batch and writes their results to res
// (len(res) == len(ops)): st's Batch when st is a Batcher, else each op in
// order through st's structures. It returns the round trips made (0 for
// Memory).
func Run(ctx context.Context, st Store, ops []Op, now time.Time, res []Result) int {
	switch s := st.(type) {
	case *Memory:
		for i := range ops {
			s.do(ctx, &ops[i], now, &res[i])
		}
		return 0
	case Batcher:
		// Copies: ops and res stay where the caller put them instead of
		// escaping through the interface.
		out := make([]Result, len(ops))
		n := s.Batch(ctx, slices.Clone(ops), now, out)
		copy(res, out)
		return n
	}
	for i := range ops {
		res[i] = Do(ctx, st, ops[i], now)
	}
	return 0
}

// do runs one op on Memory's structures directly (no interface calls: the
// per-call policy path).
func (m *Memory) do(ctx context.Context, op *Op, now time.Time, r *Result) {
	*r = Result{}
	switch op.Kind {
	case OpCounterAdd:
		r.N, r.Err = m.counter.Add(ctx, op.Key, op.N, op.Window, now)
	case OpDistinctAdd:
		r.N, r.Err = m.distinct.Add(ctx, op.Key, op.Member, op.Window, now)
	case OpFlagsGet:
		r.Until, r.OK, r.Err = m.flags.Get(ctx, op.Key, now)
	case OpComplaintsCount:
		r.N, r.Err = m.complaints.Count(ctx, op.Key, op.Window, now)
	case OpConcurrencyAcquire:
		r.N, r.Err = m.concurrent.Acquire(ctx, op.Key, op.Member, op.Window, now)
	default:
		*r = Do(ctx, m, *op, now)
	}
}

// Do runs one op through st's structures.
func Do(ctx context.Context, st Store, op Op, now time.Time) Result {
	var r Result
	switch op.Kind {
	case OpCounterAdd:
		r.N, r.Err = st.Counter().Add(ctx, op.Key, op.N, op.Window, now)
	case OpCounterCount:
		r.N, r.Err = st.Counter().Count(ctx, op.Key, op.Window, now)
	case OpDistinctAdd:
		r.N, r.Err = st.Distinct().Add(ctx, op.Key, op.Member, op.Window, now)
	case OpFlagsSet:
		r.Err = st.Flags().Set(ctx, op.Key, op.Window, now)
	case OpFlagsGet:
		r.Until, r.OK, r.Err = st.Flags().Get(ctx, op.Key, now)
	case OpComplaintsAdd:
		r.Err = st.Complaints().Add(ctx, op.Key, now)
	case OpComplaintsCount:
		r.N, r.Err = st.Complaints().Count(ctx, op.Key, op.Window, now)
	case OpConcurrencyAcquire:
		r.N, r.Err = st.Concurrency().Acquire(ctx, op.Key, op.Member, op.Window, now)
	case OpConcurrencyRelease:
		r.Err = st.Concurrency().Release(ctx, op.Key, op.Member)
	default:
		r.Err = fmt.Errorf("%w: operation kind %d", ErrInvalid, op.Kind)
	}
	return r
}
