// Package records is the call-record database: one row per initial INVITE,
// with what a traceback request asks of a provider (who handed us the call,
// when, with which attestation and origid, and what stirgate decided).
//
// The call path never waits on it: records go into a bounded queue that a
// background writer empties in batched transactions; a full queue drops the
// record and counts it. SQLite (modernc.org/sqlite: pure Go, no cgo) is the
// embedded store. This is the only package that imports a database driver.
package records

import (
	"time"
)

// Record is one initial INVITE's traceback record.
type Record struct {
	At        time.Time // when the INVITE arrived (stored in ms, UTC)
	CallID    string
	Realm     string // inside | outside
	Direction string // outbound | inbound
	Source    string // ip:port the INVITE came from
	Transport string // UDP | TCP
	Customer  string // the customer or trunk it was classified as

	FromTN, PAITN, Orig, Dest, RequestURI string // numbers as stirgate read them

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

// Query selects records: every set field must match; At in [From, To).
type Query struct {
	From, To       time.Time
	Orig, Dest     string
	OrigID, CallID string
	Limit          int // at most this many, newest first (0: 100)
}
