package records

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// sqliteMigrations are the schema, in order; the database keeps how many
// ran in PRAGMA user_version. Never edit one that has shipped: add the next.
var sqliteMigrations = []string{
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
	`CREATE TABLE list_entries (
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
	);`,
}

// SQLite is the embedded call-record database.
type SQLite struct {
	db     *sql.DB
	insert string
}

var _ Store = (*SQLite)(nil)

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
	placeholders := strings.TrimSuffix(strings.Repeat("?,", columnCount), ",")
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
	if version > len(sqliteMigrations) {
		return fmt.Errorf("%w: version %d, this binary knows %d", ErrNewerSchema, version, len(sqliteMigrations))
	}
	for v := version; v < len(sqliteMigrations); v++ {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, sqliteMigrations[v]); err != nil {
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

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

// Write stores a batch of records and call ends in one transaction.
func (s *SQLite) Write(ctx context.Context, recs []Record, ends []End) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if len(recs) > 0 {
			stmt, err := tx.PrepareContext(ctx, s.insert)
			if err != nil {
				return err
			}
			for i := range recs {
				if _, err := stmt.ExecContext(ctx, values(&recs[i])...); err != nil {
					return err
				}
			}
		}
		for _, e := range ends {
			if _, err := tx.ExecContext(ctx, "UPDATE calls SET duration_ms = ? WHERE call_id = ? AND at_ms = ?",
				e.Duration.Milliseconds(), e.CallID, e.At.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("records: write: %w", err)
	}
	return nil
}

// Scan calls fn with each record q selects, newest first.
func (s *SQLite) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	query, args := selectCalls(q, questionMark)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("records: search: %w", err)
	}
	defer rows.Close()
	var r Record
	for rows.Next() {
		if err := scanRecord(rows, &r); err != nil {
			return fmt.Errorf("records: search: %w", err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("records: search: %w", err)
	}
	return nil
}

// RuleHits counts the calls each rule decided since from, per bucket.
func (s *SQLite) RuleHits(ctx context.Context, from time.Time, bucket time.Duration) ([]RuleCount, error) {
	b := bucket.Milliseconds()
	rows, err := s.db.QueryContext(ctx, `SELECT rule, (at_ms / ?) * ?, count(*) FROM calls
		WHERE at_ms >= ? AND rule <> '' GROUP BY 1, 2 ORDER BY 2, 1`, b, b, from.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("records: rule hits: %w", err)
	}
	defer rows.Close()
	return scanRuleCounts(rows)
}

// Prune deletes the records older than before, in chunks so that the
// writer is never held for long; it returns how many went.
func (s *SQLite) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := s.db.ExecContext(ctx, "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE at_ms < ? LIMIT ?)", before.UnixMilli(), pruneChunk)
		if err != nil {
			return total, fmt.Errorf("records: prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
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

// Entries returns the unexpired entries of list ("": every list).
func (s *SQLite) Entries(ctx context.Context, list string, now time.Time) ([]Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT list, number, note, added_by, added_ms, expires_ms FROM list_entries
		WHERE (? = '' OR list = ?) AND (expires_ms = 0 OR expires_ms > ?) ORDER BY list, number`, list, list, now.UnixMilli())
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
