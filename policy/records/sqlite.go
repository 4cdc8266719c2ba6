package records

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// migrations are the schema, in order; the database keeps how many ran.
// Never edit one that has shipped: add the next.
var migrations = []string{
	`CREATE TABLE calls (
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
	);
	CREATE INDEX calls_at ON calls (at_ms);
	CREATE INDEX calls_orig_at ON calls (orig, at_ms);
	CREATE INDEX calls_dest_at ON calls (dest, at_ms);
	CREATE INDEX calls_call_id ON calls (call_id);
	CREATE INDEX calls_origid ON calls (origid) WHERE origid <> '';`,
}

// columns of calls in insert and select order (without id).
const columns = `at_ms, call_id, realm, direction, source, transport, customer,
	from_tn, pai_tn, orig, dest, request_uri, identity, attest, origid, x5u, iat,
	verstat, verify_reason, next_hop, status, stage, rule, reason, policy,
	ring_ms, cancel_ms, answer_ms, duration_ms`

// ErrNewerSchema: the database was written by a newer stirgate.
var ErrNewerSchema = errors.New("records: the database schema is newer than this stirgate")

// SQLite is the embedded call-record database.
type SQLite struct {
	db     *sql.DB
	insert string
}

// OpenSQLite opens (creating it if needed) the database file at path, in
// WAL mode, and brings its schema up to date. A database whose schema is
// newer than this binary's is refused.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)&_pragma=cache_size(-65536)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("records: open %s: %w", path, err)
	}
	// A few connections: one Writer inserts (SQLite serialises writers
	// anyway), and WAL lets searches read beside it.
	db.SetMaxOpenConns(4)
	placeholders := strings.TrimSuffix(strings.Repeat("?,", strings.Count(columns, ",")+1), ",")
	s := &SQLite{db: db, insert: "INSERT INTO calls (" + columns + ") VALUES (" + placeholders + ")"}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("records: %s: %w", path, err)
	}
	return s, nil
}

// migrate applies the migrations the database has not seen, each in its
// own transaction with the version bump.
func (s *SQLite) migrate(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: version %d, this binary knows %d", ErrNewerSchema, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	return nil
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// Insert stores a batch of records in one transaction.
func (s *SQLite) Insert(ctx context.Context, recs []Record) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("records: insert: %w", err)
	}
	stmt, err := tx.PrepareContext(ctx, s.insert)
	if err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("records: insert: %w", err)
	}
	for i := range recs {
		r := &recs[i]
		if _, err := stmt.ExecContext(ctx, r.At.UnixMilli(), r.CallID, r.Realm, r.Direction, r.Source, r.Transport, r.Customer,
			r.FromTN, r.PAITN, r.Orig, r.Dest, r.RequestURI, r.Identity, r.Attest, r.OrigID, r.X5U, r.IAT,
			r.Verstat, r.VerifyReason, r.NextHop, r.Status, r.Stage, r.Rule, r.Reason, r.Policy,
			r.RingAfter.Milliseconds(), r.CancelAfter.Milliseconds(), r.AnswerAfter.Milliseconds(), r.Duration.Milliseconds()); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("records: insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("records: insert: %w", err)
	}
	return nil
}

// Search returns the records q selects, newest first.
func (s *SQLite) Search(ctx context.Context, q Query) ([]Record, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if !q.From.IsZero() {
		add("at_ms >= ?", q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		add("at_ms < ?", q.To.UnixMilli())
	}
	for _, f := range []struct{ col, v string }{{"orig", q.Orig}, {"dest", q.Dest}, {"origid", q.OrigID}, {"call_id", q.CallID}} {
		if f.v != "" {
			add(f.col+" = ?", f.v)
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	query := "SELECT " + columns + " FROM calls"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY at_ms DESC, id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("records: search: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var at, ring, cancel, answer, dur int64
		if err := rows.Scan(&at, &r.CallID, &r.Realm, &r.Direction, &r.Source, &r.Transport, &r.Customer,
			&r.FromTN, &r.PAITN, &r.Orig, &r.Dest, &r.RequestURI, &r.Identity, &r.Attest, &r.OrigID, &r.X5U, &r.IAT,
			&r.Verstat, &r.VerifyReason, &r.NextHop, &r.Status, &r.Stage, &r.Rule, &r.Reason, &r.Policy,
			&ring, &cancel, &answer, &dur); err != nil {
			return nil, fmt.Errorf("records: search: %w", err)
		}
		r.At = time.UnixMilli(at).UTC()
		r.RingAfter, r.CancelAfter = time.Duration(ring)*time.Millisecond, time.Duration(cancel)*time.Millisecond
		r.AnswerAfter, r.Duration = time.Duration(answer)*time.Millisecond, time.Duration(dur)*time.Millisecond
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: search: %w", err)
	}
	return out, nil
}

// Prune deletes the records older than before, in chunks so that the
// writer is never held for long; it returns how many went.
func (s *SQLite) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := s.db.ExecContext(ctx, "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE at_ms < ? LIMIT 5000)", before.UnixMilli())
		if err != nil {
			return total, fmt.Errorf("records: prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < 5000 {
			return total, nil
		}
	}
}
