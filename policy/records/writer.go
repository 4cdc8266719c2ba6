package records

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Inserter stores a batch of records (SQLite, or PostgreSQL later).
type Inserter interface {
	Insert(ctx context.Context, recs []Record) error
}

// Writer takes records off the call path: Add never blocks, a background
// goroutine stores them in batches of up to batchSize or every flushEvery.
type Writer struct {
	db      Inserter
	log     *slog.Logger
	q       chan Record
	done    chan struct{}
	dropped atomic.Uint64 // queue full
	failed  atomic.Uint64 // a batch the database refused
	written atomic.Uint64
}

const (
	batchSize  = 512
	flushEvery = 100 * time.Millisecond
)

// NewWriter returns a writer with a queue of queueLen records; Run stores
// them.
func NewWriter(db Inserter, queueLen int, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.Default()
	}
	return &Writer{db: db, log: log, q: make(chan Record, queueLen), done: make(chan struct{})}
}

// Add queues r; a full queue drops it (counted, and logged by Run at most
// once a second) and reports false. It never waits.
func (w *Writer) Add(r Record) bool {
	select {
	case w.q <- r:
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// Dropped, Failed and Written count records: dropped for a full queue,
// lost in a batch the database refused, and stored.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }
func (w *Writer) Failed() uint64  { return w.failed.Load() }
func (w *Writer) Written() uint64 { return w.written.Load() }

// Run stores queued records until ctx is done, then stores what is still
// queued (bounded by drainTimeout) and returns.
func (w *Writer) Run(ctx context.Context, drainTimeout time.Duration) {
	defer close(w.done)
	batch := make([]Record, 0, batchSize)
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if err := w.db.Insert(ctx, batch); err != nil {
			w.failed.Add(uint64(len(batch)))
			w.log.Error("call records not stored", "records", len(batch), "err", err)
		} else {
			w.written.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var lastDropped uint64
	var lastLog time.Time
	for {
		select {
		case r := <-w.q:
			batch = append(batch, r)
			if len(batch) == batchSize {
				flush(context.Background())
			}
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
				case r := <-w.q:
					batch = append(batch, r)
					if len(batch) == batchSize {
						flush(dctx)
					}
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
