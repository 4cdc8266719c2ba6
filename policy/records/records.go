// Package records is the call-record database: one row per initial INVITE,
// with what a traceback request asks of a provider (who handed us the call,
// when, with which attestation and origid, and what stirgate decided), and
// beside it what operators change through the admin API: managed number
// lists and the audit trail of every change.
//
// The call path never waits on it: records go into a bounded queue that a
// background writer empties in batched transactions; a full queue drops the
// record and counts it. SQLite (modernc.org/sqlite: pure Go, no cgo) is the
// embedded store. This is the only package that imports a database driver.
package records

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Record is one initial INVITE's traceback record.
type Record struct {
	At        time.Time // when the INVITE arrived (stored in ms, UTC)
	CallID    string
	Realm     string // inside | outside
	Direction string // outbound | inbound
	Source    string // ip:port the INVITE came from
	// SourceAddr, when Source is empty, is turned into Source by the
	// writer's goroutine: the call path queues the record without making
	// the string.
	SourceAddr netip.AddrPort
	Transport  string // UDP | TCP
	Customer   string // the customer or trunk it was classified as

	// The numbers as stirgate read them: From, P-Asserted-Identity and To,
	// and the calling and called numbers it chose (Orig, Dest).
	FromTN, PAITN, ToTN, Orig, Dest string
	RequestURI                      string // the Request-URI's user part as received

	Identity     string // the Identity header received or sent, raw
	Attest       string // A | B | C
	OrigID       string
	X5U          string
	IAT          int64 // PASSporT iat, Unix seconds (0: none)
	Verstat      string
	VerifyReason string // why verification failed ("" when it did not)

	NextHop string // where it was forwarded ("" when it was not)
	Status  int    // final status sent upstream
	Stage   string // the stage that decided
	Rule    string // the policy rule that decided ("" for none)
	Reason  string
	Policy  string // the policy notes: each rule hit with its inputs

	RingAfter, CancelAfter, AnswerAfter time.Duration // from At; 0 when it did not happen
	Duration                            time.Duration // answer to BYE (0: not answered or not ended)
}

// End is the end of an answered call's dialog: it sets the Duration of the
// record of the INVITE that arrived at At with CallID.
type End struct {
	CallID   string
	At       time.Time
	Duration time.Duration
}

// Query selects records: every set field must match; At in [From, To).
type Query struct {
	From, To       time.Time
	Orig, Dest     string
	Number         string // orig or dest
	OrigID, CallID string
	Realm          string
	Rule           string
	Status         int    // the final status (0: any)
	Decision       string // "", "forwarded" (stage downstream) or "rejected" (any other stage)
	Limit          int    // at most this many, newest first (0: 100; Scan: 0 is no limit)
}

// Entry is a number on a managed list.
type Entry struct {
	List    string
	Number  string
	Note    string
	AddedBy string
	Added   time.Time
	Expires time.Time // zero: never
}

// Change is one line of the audit trail: who changed what, when.
type Change struct {
	ID     int64
	At     time.Time
	Actor  string // who (the API token's name, "console", a CLI user)
	Action string // e.g. list.add, list.remove, complaint, flag.clear
	Target string // what it acted on: a list and number, a number
	Detail string
}

// RuleCount is how many calls a rule decided in one time bucket.
type RuleCount struct {
	Rule   string
	Bucket time.Time
	Calls  int64
}

// Store is a call-record database: SQLite on one node, PostgreSQL for
// several. Every method is safe for concurrent use.
type Store interface {
	// Write stores records and then applies call ends, in one transaction.
	Write(ctx context.Context, recs []Record, ends []End) error
	// Scan calls fn with each record q selects, newest first; an error
	// from fn stops it and is returned.
	Scan(ctx context.Context, q Query, fn func(*Record) error) error
	// RuleHits counts the calls each rule decided since from, per bucket.
	RuleHits(ctx context.Context, from time.Time, bucket time.Duration) ([]RuleCount, error)
	// Prune deletes the records that arrived before before.
	Prune(ctx context.Context, before time.Time) (int64, error)

	// PutEntry adds or replaces a list entry; DeleteEntry removes one and
	// reports whether it was there. Both record c in the audit trail in
	// the same transaction.
	PutEntry(ctx context.Context, e Entry, c Change) error
	DeleteEntry(ctx context.Context, list, number string, c Change) (bool, error)
	// Entries returns the unexpired entries of list and number ("": of
	// every list, every number).
	Entries(ctx context.Context, list, number string, now time.Time) ([]Entry, error)
	// Audit records a change that is not a list edit.
	Audit(ctx context.Context, c Change) error
	// Changes returns the audit trail, newest first, at most limit lines
	// with ID < before (0: from the newest).
	Changes(ctx context.Context, before int64, limit int) ([]Change, error)
	// LastChange is the ID of the newest audit line (0: none): a node
	// polls it to learn that the lists changed on another node.
	LastChange(ctx context.Context) (int64, error)

	Close() error
}

// ErrNewerSchema: the database was written by a newer stirgate.
var ErrNewerSchema = errors.New("records: the database schema is newer than this stirgate")

// Search returns the records q selects, newest first (at most q.Limit, 100
// when it is 0).
func Search(ctx context.Context, s Store, q Query) ([]Record, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []Record
	err := s.Scan(ctx, q, func(r *Record) error {
		out = append(out, *r)
		return nil
	})
	return out, err
}
