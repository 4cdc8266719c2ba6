package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/records"
	"github.com/stirgate/stirgate/sip"
)

// How often the managed lists are re-read when another node changed them,
// and how often old records are pruned.
const (
	listPollInterval = 500 * time.Millisecond
	pruneInterval    = time.Hour
)

// openRecordStore opens the records.backend database (nil for none).
func openRecordStore(ctx context.Context, cfg *configs.Config) (records.Store, error) {
	rc := cfg.Records
	switch rc.Backend {
	case "sqlite":
		s, err := records.OpenSQLite(ctx, cfg.Resolve(rc.Path))
		if err != nil {
			return nil, fmt.Errorf("records.path: %w", err)
		}
		return s, nil
	case "postgres":
		s, err := records.OpenPostgres(ctx, rc.DSN)
		if err != nil {
			return nil, fmt.Errorf("records.dsn: %w", err)
		}
		return s, nil
	}
	return nil, nil
}

// recorder puts the edge's call records and dialog ends into the database
// through the background writer, prunes old records, and keeps the managed
// lists in force in step with the database.
type recorder struct {
	store     records.Store
	w         *records.Writer
	log       *slog.Logger
	retention time.Duration
	managed   *policy.ManagedLists
	lastList  int64 // the audit line whose lists are in force
	pruned    prometheus.Counter
}

func newRecorder(st records.Store, cfg configs.RecordsConfig, managed *policy.ManagedLists, reg prometheus.Registerer, log *slog.Logger) *recorder {
	r := &recorder{store: st, w: records.NewWriter(st, cfg.Queue, log), log: log,
		retention: time.Duration(cfg.RetentionDays) * 24 * time.Hour, managed: managed,
		lastList: -1,
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stirgate_records_pruned_total",
			Help: "Call records deleted because they were older than records.retention_days.",
		})}
	reg.MustRegister(r.pruned,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stirgate_records_written_total",
			Help: "Call records and call ends stored in the record database.",
		}, func() float64 { return float64(r.w.Written()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stirgate_records_dropped_total",
			Help: "Call records and call ends dropped because the writer's queue (records.queue) was full.",
		}, func() float64 { return float64(r.w.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stirgate_records_failed_total",
			Help: "Call records and call ends lost in a batch the database refused (logged).",
		}, func() float64 { return float64(r.w.Failed()) }),
	)
	return r
}

// add converts the edge's record and queues it; it never waits.
func (r *recorder) add(c sip.CallRecord) {
	rec := &records.Record{
		At: c.At, CallID: c.CallID, Realm: c.Realm, Direction: c.Dir.String(), SourceAddr: c.Source,
		Transport: c.Transport, Customer: c.Customer,
		FromTN: c.FromTN, PAITN: c.PAITN, ToTN: c.ToTN, Orig: c.Orig, Dest: c.Dest, RequestURI: c.RequestURI,
		Identity: c.Identity, Attest: c.Attest, OrigID: c.OrigID, X5U: c.X5U, IAT: c.IAT,
		Verstat: string(c.Verstat), VerifyReason: c.VerifyFailure,
		NextHop: c.NextHop, Status: c.Status, Stage: c.Stage, Rule: c.Rule, Reason: c.Reason,
		Policy: strings.Join(c.Notes, "; "), RingAfter: c.RingAfter, CancelAfter: c.CancelAfter,
	}
	if c.Status >= 200 && c.Status < 300 {
		rec.AnswerAfter = c.Duration
	}
	r.w.Add(rec)
}

// ended queues the duration of an answered call.
func (r *recorder) ended(d sip.DialogEnd) {
	r.w.End(records.End{CallID: d.CallID, At: d.At, Duration: d.Ended.Sub(d.Answered)})
}

// loadLists puts the managed lists of the database in force; the first
// load at start must succeed.
func (r *recorder) loadLists(ctx context.Context) error {
	last, err := r.store.LastChange(ctx)
	if err != nil {
		return err
	}
	if last == r.lastList {
		return nil
	}
	entries, err := r.store.Entries(ctx, "", "", time.Now())
	if err != nil {
		return err
	}
	me := make([]policy.ManagedEntry, len(entries))
	for i, e := range entries {
		me[i] = policy.ManagedEntry{List: e.List, Number: e.Number, Expires: e.Expires}
	}
	if err := r.managed.Set(me); err != nil {
		return fmt.Errorf("managed lists: %w", err)
	}
	r.lastList = last
	return nil
}

// prune deletes the records older than the retention at now, in whole UTC
// days: SQLite drops a day's table at once instead of deleting an hour of
// rows from its indexes every hour (a record is kept up to a day beyond
// the retention).
func (r *recorder) prune(ctx context.Context, now time.Time) {
	n, err := r.store.Prune(ctx, now.Add(-r.retention).Truncate(24*time.Hour))
	r.pruned.Add(float64(n))
	if err != nil {
		r.log.Warn("call records not pruned", "err", err, "pruned", n)
	} else if n > 0 {
		r.log.Info("call records pruned", "pruned", n, "took", time.Since(now).Round(time.Millisecond))
	}
}

// run writes records until ctx is done (then drains the queue for at most
// drain), re-reads the managed lists when the audit trail moved, and
// prunes old records every hour (and once at start).
func (r *recorder) run(ctx context.Context, drain time.Duration) {
	go r.w.Run(ctx, drain)
	lists := time.NewTicker(listPollInterval)
	defer lists.Stop()
	prune := time.NewTimer(time.Minute)
	defer prune.Stop()
	var listErr bool
	for {
		select {
		case <-ctx.Done():
			<-r.w.Done()
			return
		case <-lists.C:
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := r.loadLists(lctx)
			cancel()
			if err != nil && !listErr {
				r.log.Warn("managed lists not refreshed: the record database failed; the lists in force keep serving", "err", err)
			} else if err == nil && listErr {
				r.log.Info("managed lists refreshed again")
			}
			listErr = err != nil
		case <-prune.C:
			r.prune(ctx, time.Now())
			prune.Reset(pruneInterval)
		}
	}
}
