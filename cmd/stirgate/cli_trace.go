package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/cmd/stirgate/admin"
	"github.com/stirgate/stirgate/policy/records"
)

// traceCommand answers a traceback request from the call-record database:
// for each call that matches, which upstream delivered it (source address,
// transport, trunk or customer), when, with which attestation, origid and
// verstat, and what stirgate decided. Exit 0 with at least one call, 1
// when none matched, 2 for a usage or database error.
func traceCommand(args []string, out io.Writer) int {
	fs := newFlags("trace", "stirgate trace [--config FILE] [--orig TN] [--dest TN] [--at TIME] [--window 5m] [--origid UUID] [--call-id ID] [--json|--csv] [--limit N]")
	cfgPath := fs.String("config", "", "configuration file whose records: section names the database (default: the embedded one)")
	orig := fs.String("orig", "", "calling number")
	dest := fs.String("dest", "", "called number")
	at := fs.String("at", "", "when the call was placed, RFC 3339 (e.g. 2026-12-07T10:02:00Z); default: now")
	window := fs.Duration("window", 5*time.Minute, "calls within this much before or after --at")
	origid := fs.String("origid", "", "origid of the PASSporT (RFC 8588)")
	callID := fs.String("call-id", "", "Call-ID")
	asJSON := fs.Bool("json", false, "one JSON object per call (JSON lines), for scripts")
	asCSV := fs.Bool("csv", false, "CSV with a header row (an ITG portal's upload)")
	limit := fs.Int("limit", 100, "at most this many calls, newest first")
	if !parseFlags(fs, args, 0, 0) {
		return 2
	}
	if *orig == "" && *dest == "" && *origid == "" && *callID == "" {
		fmt.Fprintln(fs.Output(), "stirgate trace: give at least one of --orig, --dest, --origid, --call-id")
		fs.Usage()
		return 2
	}
	if *asJSON && *asCSV {
		fmt.Fprintln(fs.Output(), "stirgate trace: --json or --csv, not both")
		return 2
	}
	q := records.Query{OrigID: *origid, CallID: *callID, Limit: *limit}
	for _, n := range []struct {
		flag, v string
		to      *string
	}{{"--orig", *orig, &q.Orig}, {"--dest", *dest, &q.Dest}} {
		if n.v == "" {
			continue
		}
		tn, ok := passport.Canonical(n.v)
		if !ok {
			fmt.Fprintf(fs.Output(), "stirgate trace: %s %q is not a telephone number\n", n.flag, n.v)
			return 2
		}
		*n.to = tn
	}
	when := time.Now()
	if *at != "" {
		var err error
		if when, err = time.Parse(time.RFC3339, *at); err != nil {
			fmt.Fprintf(fs.Output(), "stirgate trace: --at %q is not an RFC 3339 time (2026-12-07T10:02:00Z)\n", *at)
			return 2
		}
	}
	if *at != "" || *callID == "" && *origid == "" {
		q.From, q.To = when.Add(-*window), when.Add(*window)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := openRecordStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stirgate trace:", err)
		return 2
	}
	if st == nil {
		fmt.Fprintln(os.Stderr, "stirgate trace: records.backend is none: no call records are kept")
		return 2
	}
	defer st.Close()

	n := 0
	var cw *csv.Writer
	if *asCSV {
		cw = csv.NewWriter(out)
		_ = cw.Write(admin.CSVHeader)
	}
	enc := json.NewEncoder(out)
	err = st.Scan(ctx, q, func(r *records.Record) error {
		n++
		switch {
		case *asJSON:
			return enc.Encode(admin.RecordOf(r))
		case *asCSV:
			return cw.Write(admin.CSVRow(r))
		default:
			printTrace(out, r)
			return nil
		}
	})
	if cw != nil {
		cw.Flush()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stirgate trace:", err)
		return 2
	}
	if n == 0 {
		if !*asJSON && !*asCSV {
			fmt.Fprintln(out, "no call matched")
		}
		return 1
	}
	return 0
}

// printTrace writes one call's traceback answer for a person.
func printTrace(w io.Writer, r *records.Record) {
	fmt.Fprintf(w, "%s  Call-ID %s\n", r.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"), r.CallID)
	who := r.Customer
	if who == "" {
		who = "-"
	}
	fmt.Fprintf(w, "  delivered by   %s over %s into the %s realm (%s call), customer/trunk %s\n", r.Source, r.Transport, r.Realm, r.Direction, who)
	fmt.Fprintf(w, "  numbers        orig %s  dest %s  (From %s, PAI %s, To %s, Request-URI user %s)\n", dash(r.Orig), dash(r.Dest), dash(r.FromTN), dash(r.PAITN), dash(r.ToTN), dash(r.RequestURI))
	iat := "-"
	if r.IAT != 0 {
		iat = time.Unix(r.IAT, 0).UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "  identity       attest %s  origid %s  x5u %s  iat %s  verstat %s\n", dash(r.Attest), dash(r.OrigID), dash(r.X5U), iat, dash(r.Verstat))
	if r.VerifyReason != "" {
		fmt.Fprintf(w, "  verification   failed: %s\n", r.VerifyReason)
	}
	decision := fmt.Sprintf("%d, decided by %s", r.Status, r.Stage)
	if r.Rule != "" {
		decision += " rule " + r.Rule
	}
	if r.Reason != "" {
		decision += ": " + r.Reason
	}
	fmt.Fprintf(w, "  decision       %s\n", decision)
	if r.NextHop != "" {
		fmt.Fprintf(w, "  handed to      %s\n", r.NextHop)
	}
	if r.Policy != "" {
		fmt.Fprintf(w, "  policy         %s\n", r.Policy)
	}
	var times []string
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"rang after", r.RingAfter}, {"cancelled after", r.CancelAfter}, {"answered after", r.AnswerAfter}, {"lasted", r.Duration}} {
		if t.d > 0 {
			times = append(times, fmt.Sprintf("%s %s", t.name, t.d))
		}
	}
	if len(times) > 0 {
		fmt.Fprintf(w, "  timing         %s\n", strings.Join(times, ", "))
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
