package records

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// columns of calls in insert and select order (without id); both
// databases use the same names.
const columns = `at_ms, call_id, realm, direction, source, transport, customer,
	from_tn, pai_tn, to_tn, orig, dest, request_uri, identity, attest, origid, x5u, iat,
	verstat, verify_reason, next_hop, status, stage, rule, reason, policy,
	ring_ms, cancel_ms, answer_ms, duration_ms`

// columnCount is the number of columns above.
var columnCount = strings.Count(columns, ",") + 1

// values returns r's column values in the order of columns.
func values(r *Record) []any {
	return []any{r.At.UnixMilli(), r.CallID, r.Realm, r.Direction, r.Source, r.Transport, r.Customer,
		r.FromTN, r.PAITN, r.ToTN, r.Orig, r.Dest, r.RequestURI, r.Identity, r.Attest, r.OrigID, r.X5U, r.IAT,
		r.Verstat, r.VerifyReason, r.NextHop, r.Status, r.Stage, r.Rule, r.Reason, r.Policy,
		r.RingAfter.Milliseconds(), r.CancelAfter.Milliseconds(), r.AnswerAfter.Milliseconds(), r.Duration.Milliseconds()}
}

// scanner is what both databases' rows offer.
type scanner interface{ Scan(dest ...any) error }

// scanRecord reads one row selected with columns into r.
func scanRecord(row scanner, r *Record) error {
	var at, ring, cancel, answer, dur int64
	if err := row.Scan(&at, &r.CallID, &r.Realm, &r.Direction, &r.Source, &r.Transport, &r.Customer,
		&r.FromTN, &r.PAITN, &r.ToTN, &r.Orig, &r.Dest, &r.RequestURI, &r.Identity, &r.Attest, &r.OrigID, &r.X5U, &r.IAT,
		&r.Verstat, &r.VerifyReason, &r.NextHop, &r.Status, &r.Stage, &r.Rule, &r.Reason, &r.Policy,
		&ring, &cancel, &answer, &dur); err != nil {
		return err
	}
	r.At = time.UnixMilli(at).UTC()
	r.RingAfter, r.CancelAfter = time.Duration(ring)*time.Millisecond, time.Duration(cancel)*time.Millisecond
	r.AnswerAfter, r.Duration = time.Duration(answer)*time.Millisecond, time.Duration(dur)*time.Millisecond
	return nil
}

// placeholder writes the n-th (from 1) bind parameter of a dialect.
type placeholder func(n int) string

func questionMark(int) string { return "?" }
func dollar(n int) string     { return "$" + strconv.Itoa(n) }

// selectCalls is the SELECT of q from table: the same text for both
// databases but for the placeholders.
func selectCalls(table string, q Query, ph placeholder) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, v ...any) {
		for range v {
			cond = strings.Replace(cond, "#", ph(len(args)+1), 1)
			args = append(args, v[0])
			v = v[1:]
		}
		where = append(where, cond)
	}
	if !q.From.IsZero() {
		add("at_ms >= #", q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		add("at_ms < #", q.To.UnixMilli())
	}
	if q.OrigID != "" {
		// The origid index is partial (origid <> ''): SQLite uses it only
		// when the query states that condition too.
		add("origid = # AND origid <> ''", q.OrigID)
	}
	for _, f := range []struct{ col, v string }{{"orig", q.Orig}, {"dest", q.Dest},
		{"call_id", q.CallID}, {"realm", q.Realm}, {"rule", q.Rule}} {
		if f.v != "" {
			add(f.col+" = #", f.v)
		}
	}
	if q.Number != "" {
		add("(orig = # OR dest = #)", q.Number, q.Number)
	}
	if q.Status != 0 {
		add("status = #", q.Status)
	}
	switch q.Decision {
	case "forwarded":
		where = append(where, "stage = 'downstream'")
	case "rejected":
		where = append(where, "stage <> 'downstream'")
	}
	query := "SELECT " + columns + " FROM " + table
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY at_ms DESC, id DESC"
	if q.Limit > 0 {
		query += " LIMIT " + ph(len(args)+1)
		args = append(args, q.Limit)
	}
	return query, args
}

// rowsOf is what both databases' result sets offer.
type rowsOf interface {
	scanner
	Next() bool
	Err() error
}

func expiresMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// scanEntries reads list, number, note, added_by, added_ms, expires_ms rows.
func scanEntries(rows rowsOf) ([]Entry, error) {
	var out []Entry
	for rows.Next() {
		var e Entry
		var added, expires int64
		if err := rows.Scan(&e.List, &e.Number, &e.Note, &e.AddedBy, &added, &expires); err != nil {
			return nil, fmt.Errorf("records: list entries: %w", err)
		}
		e.Added = time.UnixMilli(added).UTC()
		if expires != 0 {
			e.Expires = time.UnixMilli(expires).UTC()
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: list entries: %w", err)
	}
	return out, nil
}

// scanChanges reads id, at_ms, actor, action, target, detail rows.
func scanChanges(rows rowsOf) ([]Change, error) {
	var out []Change
	for rows.Next() {
		var c Change
		var at int64
		if err := rows.Scan(&c.ID, &at, &c.Actor, &c.Action, &c.Target, &c.Detail); err != nil {
			return nil, fmt.Errorf("records: audit: %w", err)
		}
		c.At = time.UnixMilli(at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: audit: %w", err)
	}
	return out, nil
}

// scanRuleCounts reads rule, bucket_ms, count rows.
func scanRuleCounts(rows rowsOf) ([]RuleCount, error) {
	var out []RuleCount
	for rows.Next() {
		var c RuleCount
		var ms int64
		if err := rows.Scan(&c.Rule, &ms, &c.Calls); err != nil {
			return nil, fmt.Errorf("records: rule hits: %w", err)
		}
		c.Bucket = time.UnixMilli(ms).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: rule hits: %w", err)
	}
	return out, nil
}
