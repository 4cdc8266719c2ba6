package records

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Writer takes records off the call path: Add and End never block, a
// background goroutine stores them in batches of up to maxBatch, or what
// came in flushEvery.
type Writer struct {
	db      Store
	log     *slog.Logger
	q       chan item
	done    chan struct{}
	dropped atomic.Uint64 // queue full
	failed  atomic.Uint64 // a batch the database refused
	written atomic.Uint64
}

// item is a record or, when rec is nil, a call end.
type item struct {
	rec *Record
	end End
}

// A batch is what the queue holds when the writer comes for it, up to
// maxBatch: at low rates the flush every flushEvery keeps batches small;
// when the queue backs up, bigger batches amortise each commit (and in
// SQLite each WAL page an index insert dirties) over more records.
const (
	batchSize  = 512   // the buffer's initial capacity
	maxBatch   = 16384 // records and ends per transaction at most
	flushEvery = 100 * time.Millisecond
)

// NewWriter returns a writer with a queue of queueLen records and ends; Run
// stores them.
func NewWriter(db Store, queueLen int, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.Default()
	}
	return &Writer{db: db, log: log, q: make(chan item, queueLen), done: make(chan struct{})}
}

// Add queues r (the Writer keeps the pointer); a full queue drops it
// (counted, and logged by Run at most once a second) and reports false. It
// never waits.
func (w *Writer) Add(r *Record) bool { return w.put(item{rec: r}) }

// End queues the end of an answered call, like Add.
func (w *Writer) End(e End) bool { return w.put(item{end: e}) }

func (w *Writer) put(it item) bool {
	select {
	case w.q <- it:
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// Dropped, Failed and Written count records and ends: dropped for a full
// queue, lost in a batch the database refused, and stored.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }
func (w *Writer) Failed() uint64  { return w.failed.Load() }
func (w *Writer) Written() uint64 { return w.written.Load() }

// Run stores queued records until ctx is done, then stores what is still
// queued (bounded by drainTimeout) and returns.
func (w *Writer) Run(ctx context.Context, drainTimeout time.Duration) {
	defer close(w.done)
	recs := make([]Record, 0, batchSize)
	var ends []End
	flush := func(ctx context.Context) {
		n := len(recs) + len(ends)
		if n == 0 {
			return
		}
		if err := w.db.Write(ctx, recs, ends); err != nil {
			w.failed.Add(uint64(n))
			w.log.Error("call records not stored", "records", n, "err", err)
		} else {
			w.written.Add(uint64(n))
		}
		clear(recs)
		recs, ends = recs[:0], ends[:0]
	}
	take := func(ctx context.Context, it item) {
		if it.rec != nil {
			if it.rec.Source == "" && it.rec.SourceAddr.IsValid() {
				it.rec.Source = it.rec.SourceAddr.String()
			}
			recs = append(recs, *it.rec)
		} else {
			ends = append(ends, it.end)
		}
		if len(recs)+len(ends) >= maxBatch {
			flush(ctx)
		}
	}
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var lastDropped uint64
	var lastLog time.Time
	for {
		select {
		case it := <-w.q:
			take(context.Background(), it)
		case <-t.C:
			flush(context.Background())
			if d := w.dropped.Load(); d != lastDropped && time.Since(lastLog) >= time.Second {
				w.log.Warn("call records dropped: the record queue was full", "dropped_total", d)
				lastDropped, lastLog = d, time.Now()
			}
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			defer cancel()
			for {
				select {
				case it := <-w.q:
					take(dctx, it)
				default:
					flush(dctx)
					return
				}
			}
		}
	}
}

// Done is closed when Run has returned.
func (w *Writer) Done() <-chan struct{} { return w.done }
