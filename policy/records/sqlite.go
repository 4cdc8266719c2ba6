package records

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// callsColumnsV1 are the columns of the single calls table of schema 1
// and 2 (migration 1 uses them: never change them).
const callsColumnsV1 = `
		id            INTEGER PRIMARY KEY,
		at_ms         INTEGER NOT NULL,
		call_id       TEXT NOT NULL,
		realm         TEXT NOT NULL,
		direction     TEXT NOT NULL,
		source        TEXT NOT NULL,
		transport     TEXT NOT NULL,
		customer      TEXT NOT NULL,
		from_tn       TEXT NOT NULL,
		pai_tn        TEXT NOT NULL,
		orig          TEXT NOT NULL,
		dest          TEXT NOT NULL,
		request_uri   TEXT NOT NULL,
		identity      TEXT NOT NULL,
		attest        TEXT NOT NULL,
		origid        TEXT NOT NULL,
		x5u           TEXT NOT NULL,
		iat           INTEGER NOT NULL,
		verstat       TEXT NOT NULL,
		verify_reason TEXT NOT NULL,
		next_hop      TEXT NOT NULL,
		status        INTEGER NOT NULL,
		stage         TEXT NOT NULL,
		rule          TEXT NOT NULL,
		reason        TEXT NOT NULL,
		policy        TEXT NOT NULL,
		ring_ms       INTEGER NOT NULL,
		cancel_ms     INTEGER NOT NULL,
		answer_ms     INTEGER NOT NULL,
		duration_ms   INTEGER NOT NULL
	`

// dayColumns are the columns of a day's calls table (schema 3). A new
// column is a new migration that alters every day table, and goes here.
const dayColumns = callsColumnsV1 + `,
		to_tn         TEXT NOT NULL DEFAULT ''`

// sqliteMigrations are the schema, in order; the database keeps how many
// ran in PRAGMA user_version. Never edit one that has shipped: add the next.
var sqliteMigrations = []func(ctx context.Context, tx *sql.Tx) error{
	execMigration(`CREATE TABLE calls (` + callsColumnsV1 + `);
	CREATE INDEX calls_at ON calls (at_ms);
	CREATE INDEX calls_orig_at ON calls (orig, at_ms);
	CREATE INDEX calls_dest_at ON calls (dest, at_ms);
	CREATE INDEX calls_call_id ON calls (call_id);
	CREATE INDEX calls_origid ON calls (origid) WHERE origid <> '';`),
	execMigration(`CREATE TABLE list_entries (
		list       TEXT NOT NULL,
		number     TEXT NOT NULL,
		note       TEXT NOT NULL,
		added_by   TEXT NOT NULL,
		added_ms   INTEGER NOT NULL,
		expires_ms INTEGER NOT NULL,
		PRIMARY KEY (list, number)
	);
	CREATE TABLE audit (
		id     INTEGER PRIMARY KEY,
		at_ms  INTEGER NOT NULL,
		actor  TEXT NOT NULL,
		action TEXT NOT NULL,
		target TEXT NOT NULL,
		detail TEXT NOT NULL
	);`),
	// 3: one table of calls per UTC day. A day's indexes stay small enough
	// for the page cache, so inserts touch cached pages instead of random
	// ones across indexes of the whole retention; pruning a day is a DROP
	// TABLE instead of deleting its rows from five indexes.
	moveCallsToDayTables,
}

// execMigration is a migration of SQL statements.
func execMigration(stmts string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, stmts)
		return err
	}
}

// moveCallsToDayTables moves the rows of the single calls table into day
// tables and drops it.
func moveCallsToDayTables(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "SELECT DISTINCT at_ms / ? FROM calls", dayMs)
	if err != nil {
		return err
	}
	var days []int64
	for rows.Next() {
		var d int64
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return err
		}
		days = append(days, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, d := range days {
		if err := createDayTable(ctx, tx, d); err != nil {
			return err
		}
		// Schema 2 had no to_tn: it stays ''.
		v1 := strings.Replace(columns, "to_tn, ", "", 1)
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+dayTable(d)+" ("+v1+") SELECT "+v1+
			" FROM calls WHERE at_ms >= ? AND at_ms < ? ORDER BY id", d*dayMs, (d+1)*dayMs); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, "DROP TABLE calls")
	return err
}

// yieldEvery is how many inserts the writer makes between yields (about
// 0.5 ms of CPU).
const yieldEvery = 16

// dayMs is one day in ms: records are stored in one table per UTC day.
const dayMs = int64(24 * time.Hour / time.Millisecond)

// dayOf is the day number (days since 1970-01-01 UTC) of t.
func dayOf(t time.Time) int64 { return floorDiv(t.UnixMilli(), dayMs) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// dayTable names the calls table of day d: calls_YYYYMMDD.
func dayTable(d int64) string {
	return "calls_" + time.UnixMilli(d*dayMs).UTC().Format("20060102")
}

// dayOfTable reads the day of a table name, ok false for another table.
func dayOfTable(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, "calls_")
	if !ok || len(digits) != 8 {
		return 0, false
	}
	t, err := time.Parse("20060102", digits)
	if err != nil {
		return 0, false
	}
	return dayOf(t), true
}

// createDayTable creates the calls table of day d with its indexes, the
// same as the single table of migration 1 had.
func createDayTable(ctx context.Context, tx *sql.Tx, d int64) error {
	t := dayTable(d)
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t+` (`+dayColumns+`);
	CREATE INDEX IF NOT EXISTS `+t+`_at ON `+t+` (at_ms);
	CREATE INDEX IF NOT EXISTS `+t+`_orig_at ON `+t+` (orig, at_ms);
	CREATE INDEX IF NOT EXISTS `+t+`_dest_at ON `+t+` (dest, at_ms);
	CREATE INDEX IF NOT EXISTS `+t+`_call_id ON `+t+` (call_id);
	CREATE INDEX IF NOT EXISTS `+t+`_origid ON `+t+` (origid) WHERE origid <> '';`)
	return err
}

// SQLite is the embedded call-record database. Calls are kept in one
// table per UTC day (calls_YYYYMMDD); searches visit the days their time
// window covers, newest first.
type SQLite struct {
	db            *sql.DB
	stop, stopped chan struct{} // the checkpoint goroutine's
	closeOnce     sync.Once

	mu   sync.Mutex
	days []int64 // the day tables that exist, ascending
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating it if needed) the database file at path, in
// WAL mode, and brings its schema up to date. A database whose schema is
// newer than this binary's is refused.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)&_pragma=cache_size(-65536)" +
		// SQLite's own checkpoint runs in the committing writer once the
		// WAL holds 1,000 pages: after nearly every batch, writing each
		// dirty index page a second time with an fsync. A checkpoint every
		// second (checkpointEvery) from a goroutine of its own does it
		// once per page per second; 131,072 pages (512 MB) is the
		// backstop (a long export holds the WAL), and a WAL that grew
		// beyond 64 MB is cut back after a checkpoint.
		"&_pragma=wal_autocheckpoint(131072)&_pragma=journal_size_limit(67108864)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("records: open %s: %w", path, err)
	}
	// A few connections: one Writer inserts (SQLite serialises writers
	// anyway), and WAL lets searches read beside it.
	db.SetMaxOpenConns(4)
	s := &SQLite{db: db, stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("records: %s: %w", path, err)
	}
	if err := s.loadDays(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("records: %s: %w", path, err)
	}
	go s.checkpoints()
	return s, nil
}

// checkpointEvery is how often the WAL is copied into the database file.
const checkpointEvery = time.Second

// checkpoints copies the WAL into the database file every checkpointEvery
// (PASSIVE: it never waits for readers or the writer) until Close.
func (s *SQLite) checkpoints() {
	defer close(s.stopped)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_, _ = s.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// loadDays reads which day tables exist.
func (s *SQLite) loadDays(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'calls\\_%' ESCAPE '\\'")
	if err != nil {
		return fmt.Errorf("list day tables: %w", err)
	}
	defer rows.Close()
	var days []int64
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return fmt.Errorf("list day tables: %w", err)
		}
		if d, ok := dayOfTable(name); ok {
			days = append(days, d)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list day tables: %w", err)
	}
	slices.Sort(days)
	s.mu.Lock()
	s.days = days
	s.mu.Unlock()
	return nil
}

// daysIn returns the day tables that may hold records in [from, to) (zero
// times: unbounded), newest first.
func (s *SQLite) daysIn(from, to time.Time) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for i := len(s.days) - 1; i >= 0; i-- {
		d := s.days[i]
		if (!to.IsZero() && d*dayMs >= to.UnixMilli()) || (!from.IsZero() && (d+1)*dayMs <= from.UnixMilli()) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// haveDay reports whether day d's table exists.
func (s *SQLite) haveDay(d int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := slices.BinarySearch(s.days, d)
	return ok
}

// addDays records tables created by a committed transaction.
func (s *SQLite) addDays(days []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range days {
		if i, ok := slices.BinarySearch(s.days, d); !ok {
			s.days = slices.Insert(s.days, i, d)
		}
	}
}

// dropDay forgets a dropped day table.
func (s *SQLite) dropDay(d int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := slices.BinarySearch(s.days, d); ok {
		s.days = slices.Delete(s.days, i, i+1)
	}
}

// insertInto is the INSERT of one record into table.
func insertInto(table string) string {
	return "INSERT INTO " + table + " (" + columns + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?,", columnCount), ",") + ")"
}

// migrate applies the migrations the database has not seen, each in its
// own transaction with the version bump.
func (s *SQLite) migrate(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(sqliteMigrations) {
		return fmt.Errorf("%w: version %d, this binary knows %d", ErrNewerSchema, version, len(sqliteMigrations))
	}
	for v := version; v < len(sqliteMigrations); v++ {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			if err := sqliteMigrations[v](ctx, tx); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	return nil
}

// inTx runs fn in a transaction, committed when fn returns nil.
func (s *SQLite) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Close stops the checkpoints and closes the database.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.stopped
	})
	return s.db.Close()
}

// Write stores a batch of records and call ends in one transaction; the
// first record of a day creates that day's table.
func (s *SQLite) Write(ctx context.Context, recs []Record, ends []End) error {
	var created []int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		created = created[:0]
		stmts := map[int64]*sql.Stmt{}
		for i := range recs {
			d := dayOf(recs[i].At)
			stmt := stmts[d]
			if stmt == nil {
				if !s.haveDay(d) && !slices.Contains(created, d) {
					if err := createDayTable(ctx, tx, d); err != nil {
						return err
					}
					created = append(created, d)
				}
				var err error
				if stmt, err = tx.PrepareContext(ctx, insertInto(dayTable(d))); err != nil {
					return err
				}
				stmts[d] = stmt
			}
			if _, err := stmt.ExecContext(ctx, values(&recs[i])...); err != nil {
				return err
			}
			if i%yieldEvery == yieldEvery-1 {
				// The writer shares the process's Ps with the call path:
				// a batch is 15 ms of CPU, which would otherwise delay
				// SIP goroutines up to the scheduler's 10 ms slice and
				// look like overload to the admission control.
				runtime.Gosched()
			}
		}
		for _, e := range ends {
			d := dayOf(e.At)
			if !s.haveDay(d) && !slices.Contains(created, d) {
				continue // its record is gone (pruned) or was never stored
			}
			if _, err := tx.ExecContext(ctx, "UPDATE "+dayTable(d)+" SET duration_ms = ? WHERE call_id = ? AND at_ms = ?",
				e.Duration.Milliseconds(), e.CallID, e.At.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("records: write: %w", err)
	}
	s.addDays(created)
	return nil
}

// Scan calls fn with each record q selects, newest first: it visits the
// day tables of q's window from the newest, until q.Limit records.
func (s *SQLite) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	n := 0
	for _, d := range s.daysIn(q.From, q.To) {
		dq := q
		if q.Limit > 0 {
			dq.Limit = q.Limit - n
		}
		query, args := selectCalls(dayTable(d), dq, questionMark)
		got, err := s.scanTable(ctx, query, args, fn)
		n += got
		if err != nil {
			return err
		}
		if q.Limit > 0 && n >= q.Limit {
			return nil
		}
	}
	return nil
}

// scanTable runs one day's SELECT; a table dropped meanwhile (pruned) has
// nothing to give.
func (s *SQLite) scanTable(ctx context.Context, query string, args []any, fn func(*Record) error) (int, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return 0, nil
		}
		return 0, fmt.Errorf("records: search: %w", err)
	}
	defer rows.Close()
	var r Record
	n := 0
	for rows.Next() {
		if err := scanRecord(rows, &r); err != nil {
			return n, fmt.Errorf("records: search: %w", err)
		}
		n++
		if err := fn(&r); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("records: search: %w", err)
	}
	return n, nil
}

// RuleHits counts the calls each rule decided since from, per bucket.
func (s *SQLite) RuleHits(ctx context.Context, from time.Time, bucket time.Duration) ([]RuleCount, error) {
	b := bucket.Milliseconds()
	if b <= 0 {
		return nil, fmt.Errorf("records: rule hits: bucket %s is under 1 ms", bucket)
	}
	type key struct {
		rule   string
		bucket int64
	}
	sum := map[key]int64{}
	for _, d := range s.daysIn(from, time.Time{}) {
		rows, err := s.db.QueryContext(ctx, `SELECT rule, (at_ms / ?) * ?, count(*) FROM `+dayTable(d)+`
			WHERE at_ms >= ? AND rule <> '' GROUP BY 1, 2`, b, b, from.UnixMilli())
		if err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue
			}
			return nil, fmt.Errorf("records: rule hits: %w", err)
		}
		counts, err := scanRuleCounts(rows)
		rows.Close()
		if err != nil {
			return nil, err
		}
		for _, c := range counts {
			sum[key{c.Rule, c.Bucket.UnixMilli()}] += c.Calls
		}
	}
	out := make([]RuleCount, 0, len(sum))
	for k, n := range sum {
		out = append(out, RuleCount{Rule: k.rule, Bucket: time.UnixMilli(k.bucket).UTC(), Calls: n})
	}
	slices.SortFunc(out, func(a, b RuleCount) int {
		if c := a.Bucket.Compare(b.Bucket); c != 0 {
			return c
		}
		return strings.Compare(a.Rule, b.Rule)
	})
	return out, nil
}

// Prune deletes the records older than before: the tables of whole days
// before it are dropped; the day it falls in loses its older rows in
// chunks, so the writer is never held for long. It returns how many went.
func (s *SQLite) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	cut := before.UnixMilli()
	for _, d := range s.daysIn(time.Time{}, before) {
		t := dayTable(d)
		if (d+1)*dayMs <= cut {
			var n int64
			if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+t).Scan(&n); err != nil {
				return total, fmt.Errorf("records: prune %s: %w", t, err)
			}
			if _, err := s.db.ExecContext(ctx, "DROP TABLE "+t); err != nil {
				return total, fmt.Errorf("records: prune %s: %w", t, err)
			}
			s.dropDay(d)
			total += n
			continue
		}
		for {
			res, err := s.db.ExecContext(ctx, "DELETE FROM "+t+" WHERE id IN (SELECT id FROM "+t+" WHERE at_ms < ? LIMIT ?)", cut, pruneChunk)
			if err != nil {
				return total, fmt.Errorf("records: prune %s: %w", t, err)
			}
			n, _ := res.RowsAffected()
			total += n
			if n < pruneChunk {
				break
			}
		}
	}
	return total, nil
}

// pruneChunk is how many rows one pruning statement deletes.
const pruneChunk = 5000

const insertAudit = "INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)"

func auditValues(c Change) []any {
	return []any{c.At.UnixMilli(), c.Actor, c.Action, c.Target, c.Detail}
}

// PutEntry adds or replaces a list entry and audits it.
func (s *SQLite) PutEntry(ctx context.Context, e Entry, c Change) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO list_entries (list, number, note, added_by, added_ms, expires_ms)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (list, number) DO UPDATE SET
			note = excluded.note, added_by = excluded.added_by, added_ms = excluded.added_ms, expires_ms = excluded.expires_ms`,
			e.List, e.Number, e.Note, e.AddedBy, e.Added.UnixMilli(), expiresMs(e.Expires)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, insertAudit, auditValues(c)...)
		return err
	})
	if err != nil {
		return fmt.Errorf("records: list entry: %w", err)
	}
	return nil
}

// DeleteEntry removes a list entry (audited when it was there).
func (s *SQLite) DeleteEntry(ctx context.Context, list, number string, c Change) (bool, error) {
	var found bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM list_entries WHERE list = ? AND number = ?", list, number)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if found = n > 0; !found {
			return nil
		}
		_, err = tx.ExecContext(ctx, insertAudit, auditValues(c)...)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("records: list entry: %w", err)
	}
	return found, nil
}

// Entries returns the unexpired entries of list and number ("": every
// list, every number).
func (s *SQLite) Entries(ctx context.Context, list, number string, now time.Time) ([]Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT list, number, note, added_by, added_ms, expires_ms FROM list_entries
		WHERE (?1 = '' OR list = ?1) AND (?2 = '' OR number = ?2) AND (expires_ms = 0 OR expires_ms > ?3) ORDER BY list, number`,
		list, number, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("records: list entries: %w", err)
	}
	defer rows.Close()
	return scanEntries(rows)
}

// Audit records a change that is not a list edit.
func (s *SQLite) Audit(ctx context.Context, c Change) error {
	if _, err := s.db.ExecContext(ctx, insertAudit, auditValues(c)...); err != nil {
		return fmt.Errorf("records: audit: %w", err)
	}
	return nil
}

// Changes returns the audit trail, newest first.
func (s *SQLite) Changes(ctx context.Context, before int64, limit int) ([]Change, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.QueryContext(ctx, "SELECT id, at_ms, actor, action, target, detail FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?", before, limit)
	if err != nil {
		return nil, fmt.Errorf("records: audit: %w", err)
	}
	defer rows.Close()
	return scanChanges(rows)
}

// LastChange is the ID of the newest audit line.
func (s *SQLite) LastChange(ctx context.Context) (int64, error) {
	var id int64
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(id), 0) FROM audit").Scan(&id); err != nil {
		return 0, fmt.Errorf("records: audit: %w", err)
	}
	return id, nil
}
