// Package admin is the admin HTTP API (/api/v1) and, in console/, the web
// console that uses it. Every /api/v1 request needs the admin token
// ("Authorization: Bearer <token>"); "X-Actor: <name>" names who acts in the
// audit trail. Answers are JSON; errors are {"error": "..."}.
package admin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/records"
	"github.com/stirgate/stirgate/sip"
)

// ExplainFunc runs one INVITE through the pipeline of realm in force
// without sending anything (sip.DryRun).
type ExplainFunc func(ctx context.Context, realm string, src netip.AddrPort, invite []byte) (*sip.Call, []byte, error)

// API serves /api/v1.
type API struct {
	Token   string
	Records records.Store         // nil: no record database (503)
	Engine  func() *policy.Engine // the policy in force (nil: none)
	Explain ExplainFunc
	Log     *slog.Logger
	Now     func() time.Time // nil: time.Now
}

// Complaint categories (the taxonomy of POST /api/v1/complaints).
var Categories = []string{"telemarketing", "fraud", "one-ring", "harassment", "robocall", "spoofed"}

// maxRecords caps a search; an export streams without a cap.
const maxRecords = 10000

// Handler returns the API's routes, behind the token.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/records", a.searchRecords)
	mux.HandleFunc("GET /api/v1/records/export", a.exportRecords)
	mux.HandleFunc("GET /api/v1/records/explain", a.explainRecord)
	mux.HandleFunc("POST /api/v1/explain", a.explainInvite)
	mux.HandleFunc("GET /api/v1/lists", a.lists)
	mux.HandleFunc("GET /api/v1/lists/{list}", a.listEntries)
	mux.HandleFunc("GET /api/v1/lists/{list}/{number}", a.checkEntry)
	mux.HandleFunc("PUT /api/v1/lists/{list}/{number}", a.putEntry)
	mux.HandleFunc("DELETE /api/v1/lists/{list}/{number}", a.deleteEntry)
	mux.HandleFunc("POST /api/v1/complaints", a.complain)
	mux.HandleFunc("GET /api/v1/numbers/{number}", a.inspectNumber)
	mux.HandleFunc("DELETE /api/v1/numbers/{number}/flags/{flag}", a.clearFlag)
	mux.HandleFunc("GET /api/v1/rules/hits", a.ruleHits)
	mux.HandleFunc("GET /api/v1/audit", a.audit)
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
	return RequireToken(a.Token, mux)
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *API) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

// actor is who acts: the X-Actor header, else "api".
func actor(r *http.Request) string {
	if s := strings.TrimSpace(r.Header.Get("X-Actor")); s != "" && len(s) <= 64 {
		return s
	}
	return "api"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// internal answers 500 for err and logs it.
func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	a.log().Error("admin API", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, err.Error())
}

// store returns the record database or answers 503.
func (a *API) store(w http.ResponseWriter) records.Store {
	if a.Records == nil {
		writeError(w, http.StatusServiceUnavailable, "no call-record database (records.backend: none)")
	}
	return a.Records
}

// Record is the JSON form of a call record.
type Record struct {
	At           time.Time `json:"at"`
	CallID       string    `json:"call_id"`
	Realm        string    `json:"realm"`
	Direction    string    `json:"direction"`
	Source       string    `json:"source"`
	Transport    string    `json:"transport"`
	Customer     string    `json:"customer"`
	FromTN       string    `json:"from_tn"`
	PAITN        string    `json:"pai_tn"`
	ToTN         string    `json:"to_tn"`
	Orig         string    `json:"orig"`
	Dest         string    `json:"dest"`
	RequestURI   string    `json:"request_uri"`
	Identity     string    `json:"identity"`
	Attest       string    `json:"attest"`
	OrigID       string    `json:"origid"`
	X5U          string    `json:"x5u"`
	IAT          int64     `json:"iat"`
	Verstat      string    `json:"verstat"`
	VerifyReason string    `json:"verify_reason"`
	NextHop      string    `json:"next_hop"`
	Status       int       `json:"status"`
	Decision     string    `json:"decision"` // forwarded (stage downstream) or rejected
	Stage        string    `json:"stage"`
	Rule         string    `json:"rule"`
	Reason       string    `json:"reason"`
	Policy       string    `json:"policy"`
	RingMs       int64     `json:"ring_ms"`
	CancelMs     int64     `json:"cancel_ms"`
	AnswerMs     int64     `json:"answer_ms"`
	DurationMs   int64     `json:"duration_ms"`
}

// RecordOf is the JSON form of r.
func RecordOf(r *records.Record) Record {
	return Record{At: r.At.UTC(), CallID: r.CallID, Realm: r.Realm, Direction: r.Direction, Source: r.Source,
		Transport: r.Transport, Customer: r.Customer, FromTN: r.FromTN, PAITN: r.PAITN, ToTN: r.ToTN, Orig: r.Orig, Dest: r.Dest,
		RequestURI: r.RequestURI, Identity: r.Identity, Attest: r.Attest, OrigID: r.OrigID, X5U: r.X5U, IAT: r.IAT,
		Verstat: r.Verstat, VerifyReason: r.VerifyReason, NextHop: r.NextHop, Status: r.Status, Decision: decision(r), Stage: r.Stage,
		Rule: r.Rule, Reason: r.Reason, Policy: r.Policy, RingMs: r.RingAfter.Milliseconds(),
		CancelMs: r.CancelAfter.Milliseconds(), AnswerMs: r.AnswerAfter.Milliseconds(), DurationMs: r.Duration.Milliseconds()}
}

// decision is how a record counts for the decision filter: forwarded when
// the callee's answer was relayed, rejected when stirgate answered.
func decision(r *records.Record) string {
	if r.Stage == sip.StageDownstream {
		return "forwarded"
	}
	return "rejected"
}

// CSVHeader and CSVRow are the CSV export of records (an ITG portal's
// upload, a spreadsheet): one column per field, times in RFC 3339.
var CSVHeader = []string{"at", "call_id", "realm", "direction", "source", "transport", "customer",
	"from_tn", "pai_tn", "to_tn", "orig", "dest", "request_uri", "attest", "origid", "x5u", "iat", "verstat",
	"verify_reason", "next_hop", "status", "stage", "rule", "reason", "policy", "ring_ms", "cancel_ms",
	"answer_ms", "duration_ms", "identity"}

// CSVRow is r in the order of CSVHeader.
func CSVRow(r *records.Record) []string {
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{r.At.UTC().Format(time.RFC3339Nano), r.CallID, r.Realm, r.Direction, r.Source, r.Transport, r.Customer,
		r.FromTN, r.PAITN, r.ToTN, r.Orig, r.Dest, r.RequestURI, r.Attest, r.OrigID, r.X5U, i64(r.IAT), r.Verstat,
		r.VerifyReason, r.NextHop, strconv.Itoa(r.Status), r.Stage, r.Rule, r.Reason, r.Policy,
		i64(r.RingAfter.Milliseconds()), i64(r.CancelAfter.Milliseconds()), i64(r.AnswerAfter.Milliseconds()),
		i64(r.Duration.Milliseconds()), r.Identity}
}

// queryOf reads the record filters of a request.
func queryOf(r *http.Request, defaultLimit int) (records.Query, error) {
	v := r.URL.Query()
	var q records.Query
	var err error
	for _, t := range []struct {
		key string
		to  *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(t.key); s != "" {
			if *t.to, err = time.Parse(time.RFC3339, s); err != nil {
				return q, fmt.Errorf("%s: %q is not an RFC 3339 time", t.key, s)
			}
		}
	}
	for _, f := range []struct {
		key string
		to  *string
	}{{"number", &q.Number}, {"orig", &q.Orig}, {"dest", &q.Dest}} {
		if s := v.Get(f.key); s != "" {
			tn, ok := passport.Canonical(s)
			if !ok {
				return q, fmt.Errorf("%s: %q is not a telephone number", f.key, s)
			}
			*f.to = tn
		}
	}
	q.OrigID, q.CallID, q.Realm, q.Rule = v.Get("origid"), v.Get("call_id"), v.Get("realm"), v.Get("rule")
	if s := v.Get("status"); s != "" {
		if q.Status, err = strconv.Atoi(s); err != nil || q.Status < 100 || q.Status > 699 {
			return q, fmt.Errorf("status: %q is not a SIP status", s)
		}
	}
	switch q.Decision = v.Get("decision"); q.Decision {
	case "", "forwarded", "rejected":
	default:
		return q, fmt.Errorf("decision: %q is not forwarded or rejected", q.Decision)
	}
	q.Limit = defaultLimit
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > maxRecords {
			return q, fmt.Errorf("limit: %q: want 1..%d", s, maxRecords)
		}
	}
	return q, nil
}

func (a *API) searchRecords(w http.ResponseWriter, r *http.Request) {
	st := a.store(w)
	if st == nil {
		return
	}
	q, err := queryOf(r, 100)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := []Record{}
	err = st.Scan(r.Context(), q, func(rec *records.Record) error {
		out = append(out, RecordOf(rec))
		return nil
	})
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": out})
}

// exportRecords streams every record the filters select, as CSV or JSON
// lines, without holding them in memory.
func (a *API) exportRecords(w http.ResponseWriter, r *http.Request) {
	st := a.store(w)
	if st == nil {
		return
	}
	q, err := queryOf(r, 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var each func(*records.Record) error
	var flush func() error
	switch format := r.URL.Query().Get("format"); format {
	case "", "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="stirgate-records.csv"`)
		cw := csv.NewWriter(w)
		if err := cw.Write(CSVHeader); err != nil {
			return
		}
		each = func(rec *records.Record) error { return cw.Write(CSVRow(rec)) }
		flush = func() error { cw.Flush(); return cw.Error() }
	case "jsonl":
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		each = func(rec *records.Record) error { return enc.Encode(RecordOf(rec)) }
		flush = func() error { return nil }
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("format: %q is not csv or jsonl", format))
		return
	}
	if err := st.Scan(r.Context(), q, each); err != nil {
		// Headers are gone: the truncated body and the log say it.
		a.log().Error("admin API: export cut short", "err", err)
		return
	}
	_ = flush()
}

// Step is one step of a call's way through stirgate, for explain.
type Step struct {
	Stage    string `json:"stage"`
	Decision string `json:"decision"` // pass | reject | forward | tag | report
	Detail   string `json:"detail"`
}

// Hit is one policy rule hit with its inputs, parsed from the record.
type Hit struct {
	Rule    string `json:"rule"`
	Mode    string `json:"mode"`
	Action  string `json:"action"`
	Matched string `json:"matched"`
	Entry   string `json:"entry"`
}

// parseHits reads the policy notes ("rule=R mode=M action=A matched=X
// entry=E; ..."), written by the policy stage in this order.
func parseHits(policyNotes string) []Hit {
	keys := []string{"rule=", " mode=", " action=", " matched=", " entry="}
	hits := []Hit{}
	for _, note := range strings.Split(policyNotes, "; ") {
		if !strings.HasPrefix(note, keys[0]) {
			continue
		}
		var v [5]string
		rest := note
		for i, k := range keys {
			rest = strings.TrimPrefix(rest, k)
			end := len(rest)
			if i+1 < len(keys) {
				if j := strings.Index(rest, keys[i+1]); j >= 0 {
					end = j
				}
			}
			v[i], rest = rest[:end], rest[end:]
		}
		hits = append(hits, Hit{Rule: v[0], Mode: v[1], Action: v[2], Matched: v[3], Entry: v[4]})
	}
	return hits
}

// explainRecord explains a stored call: the steps it went through and the
// rule hits with their inputs.
func (a *API) explainRecord(w http.ResponseWriter, r *http.Request) {
	st := a.store(w)
	if st == nil {
		return
	}
	callID := r.URL.Query().Get("call_id")
	if callID == "" {
		writeError(w, http.StatusBadRequest, "call_id: required")
		return
	}
	q := records.Query{CallID: callID, Limit: 1}
	if s := r.URL.Query().Get("at"); s != "" {
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("at: %q is not an RFC 3339 time", s))
			return
		}
		q.From, q.To = at.Truncate(time.Millisecond), at.Truncate(time.Millisecond).Add(time.Millisecond)
	}
	found, err := records.Search(r.Context(), st, q)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if len(found) == 0 {
		writeError(w, http.StatusNotFound, "no call record with Call-ID "+callID)
		return
	}
	rec := &found[0]
	writeJSON(w, http.StatusOK, map[string]any{"record": RecordOf(rec), "steps": Steps(rec), "hits": parseHits(rec.Policy)})
}

// Steps retells a stored call stage by stage.
func Steps(r *records.Record) []Step {
	steps := []Step{{Stage: "received", Decision: "pass",
		Detail: fmt.Sprintf("%s INVITE in realm %s from %s over %s: calling %q called %q (From %q, PAI %q, To %q, Request-URI user %q)",
			r.Direction, r.Realm, r.Source, r.Transport, r.Orig, r.Dest, r.FromTN, r.PAITN, r.ToTN, r.RequestURI)}}
	if r.Customer != "" {
		steps = append(steps, Step{Stage: "classify", Decision: "pass", Detail: "customer " + r.Customer})
	}
	for _, h := range parseHits(r.Policy) {
		d := h.Action
		if h.Mode == "report" {
			d = "report"
		}
		steps = append(steps, Step{Stage: "policy", Decision: d, Detail: fmt.Sprintf("rule %s (%s) matched %s %s", h.Rule, h.Mode, h.Matched, h.Entry)})
	}
	switch {
	case r.Direction == "outbound" && r.Attest != "":
		steps = append(steps, Step{Stage: "attest", Decision: "pass", Detail: fmt.Sprintf("signed attest %s origid %s x5u %s", r.Attest, r.OrigID, r.X5U)})
	case r.Direction == "inbound" && r.Verstat != "":
		d, detail := "pass", fmt.Sprintf("verstat %s attest %q origid %q x5u %q", r.Verstat, r.Attest, r.OrigID, r.X5U)
		if r.VerifyReason != "" {
			d, detail = "fail", detail+": "+r.VerifyReason
		}
		steps = append(steps, Step{Stage: "verify", Decision: d, Detail: detail})
	}
	final := Step{Stage: r.Stage, Decision: "reject", Detail: fmt.Sprintf("%d %s", r.Status, r.Reason)}
	if r.Stage == sip.StageDownstream {
		final.Decision = "forward"
		final.Detail = fmt.Sprintf("forwarded to %s; answered %d", r.NextHop, r.Status)
	}
	if r.Rule != "" {
		final.Detail += " (rule " + r.Rule + ")"
	}
	return append(steps, final)
}

// explainInvite is the dry run of a hypothetical INVITE.
func (a *API) explainInvite(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Realm  string `json:"realm"`
		Source string `json:"source"`
		Invite string `json:"invite"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if in.Realm != "inside" && in.Realm != "outside" {
		writeError(w, http.StatusBadRequest, "realm: want inside or outside")
		return
	}
	if in.Source == "" {
		in.Source = "127.0.0.1:5060"
	}
	src, err := netip.ParseAddrPort(in.Source)
	if err != nil {
		writeError(w, http.StatusBadRequest, "source: want ip:port")
		return
	}
	raw := strings.ReplaceAll(strings.ReplaceAll(in.Invite, "\r\n", "\n"), "\n", "\r\n")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	call, fwd, err := a.Explain(ctx, in.Realm, src, []byte(raw))
	out := map[string]any{"decision": "forwarded"}
	var rej *sip.Rejection
	switch {
	case errors.As(err, &rej):
		out["decision"], out["code"], out["reason"], out["stage"] = "rejected", rej.Code, rej.Reason, call.DecidedBy
		if rej.Cause != nil {
			out["reason"] = rej.Reason + ": " + rej.Cause.Error()
		}
		if a := rej.Announce; a != nil {
			out["announcement"], out["announcement_ms"] = a.Name, a.Duration.Milliseconds()
		}
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if call != nil {
		out["orig"], out["dest"], out["customer"], out["attest"] = call.Orig, call.Dest, call.Customer, call.Attest
		out["verstat"], out["notes"] = string(call.Verstat), call.Notes
	}
	out["forwarded"] = string(fwd)
	writeJSON(w, http.StatusOK, out)
}
