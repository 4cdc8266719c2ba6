package records

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The benchmarks in this file measure the call-record database at the
// size the issue names: 10 million stored records. They share one SQLite
// file (one table per UTC day, 30 of them), built on first use with plain
// Writes in transactions of bigBatch records (about 9 minutes on the
// 2-core VM) and topped up to 10 million before each benchmark (the ones
// that prune leave room, so the 30 days slide forward as in production):
// the path is $STIRGATE_RECORDS_BENCH_DB, by default
// $TMPDIR/stirgate-records-10m-v3.db (about 12 GB; a file of the old single
// calls table is migrated on open, which takes long: use a new path). They
// are skipped with -short, and like every benchmark they never run without
// -bench.
//
// The data: 10,000,000 calls over 30 days (one every 259 ms on average,
// 3.9 calls/s, about 333,000 a day; a 5-minute window holds about 1,160
// calls), callers from a pool of 100,000 numbers and callees from a pool
// of 1,000,000, both skewed so that a few numbers are busy: the busiest
// caller makes 0.32% of the calls (about 1,050 a day, like a call centre),
// the busiest callee receives 0.01% (33 a day); over the 30 days a caller
// makes 50 to 31,600 calls (median about 70) and a callee receives 7 to
// 1,000 (median about 8). Half the calls are outbound (signed here), half
// inbound (85% of them carry an Identity); every record has a realistic
// Call-ID, origid, PASSporT (about 460 bytes), policy notes and times.
// Record i is a pure function of i (bigRecord), so a benchmark knows what
// is stored without reading it, and the build can resume.

const (
	bigRows    = 10_000_000
	bigStepMs  = 259 // 10M steps of 259 ms: 29.98 days
	bigCallers = 100_000
	bigCallees = 1_000_000
	// Records per Write transaction while building: a large transaction
	// writes each index page it dirties once for many records (18,700
	// records/s into a day's table, against 4,500 in the Writer's 512).
	bigBatch = 50_000
)

var bigStart = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)

// mix is a splitmix64 stream: deterministic, cheap, allocation-free.
type mix struct{ s uint64 }

func (m *mix) next() uint64 {
	m.s += 0x9E3779B97F4A7C15
	z := m.s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func (m *mix) n(k int64) int64 { return int64(m.next() % uint64(k)) }
func (m *mix) f() float64      { return float64(m.next()>>11) / (1 << 53) }

// tn maps pool index k to a distinct 11-digit NANP number (mult is odd
// and not a multiple of 5, so k -> k*mult mod 8e9 is one-to-one).
func tn(k int64, mult, off uint64) string {
	return "1" + strconv.FormatUint(2_000_000_000+(uint64(k)*mult+off)%8_000_000_000, 10)
}

// bigCaller and bigCallee are the pools' skew: index = pool * u^p puts
// the busiest number at (1/pool)^(1/p) of the draws.
func bigCaller(m *mix) string {
	return tn(int64(bigCallers*math.Pow(m.f(), 2)), 2654435761, 12345)
}
func bigCallee(m *mix) string {
	return tn(int64(bigCallees*math.Pow(m.f(), 1.5)), 40503, 987654321)
}

func uuidOf(m *mix) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := m.next()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

var b64 = base64.RawURLEncoding

// bigRecord is stored record i.
func bigRecord(i int64) Record {
	m := mix{uint64(i)*0xD1B54A32D192ED03 + 7}
	at := bigStart.Add(time.Duration(i*bigStepMs+m.n(bigStepMs)) * time.Millisecond)
	orig, dest := bigCaller(&m), bigCallee(&m)
	r := Record{
		At:        at,
		CallID:    uuidOf(&m) + "@10.20." + strconv.FormatInt(m.n(256), 10) + "." + strconv.FormatInt(m.n(256), 10),
		Transport: "UDP",
		FromTN:    orig, PAITN: orig, ToTN: dest, Orig: orig, Dest: dest,
		RequestURI: "+" + dest,
		Status:     200, Stage: "downstream",
		Policy: "rule=per-caller-rate mode=enforce action=allow count=" + strconv.FormatInt(1+m.n(5), 10) +
			"/10 per 1m; rule=bombing mode=enforce action=allow pair=1/3 per 15m",
		RingAfter: time.Duration(80+m.n(3000)) * time.Millisecond,
	}
	if m.n(10) == 0 {
		r.Transport = "TCP"
	}
	sp := m.n(40)
	x5u := "https://cert.sp" + strconv.FormatInt(sp, 10) + ".example.net/shaken/" + strconv.FormatInt(sp*7919, 16) + ".pem"
	r.Attest, r.OrigID = "A", uuidOf(&m)
	if v := m.n(10); v >= 8 {
		r.Attest = string(rune('B' + v - 8))
	}
	if m.n(2) == 0 {
		r.Realm, r.Direction, r.Customer = "inside", "outbound", "pbx-"+strconv.FormatInt(m.n(800), 10)
		r.Source = "198.51.100." + strconv.FormatInt(m.n(250), 10) + ":5060"
		r.NextHop = "203.0.113." + strconv.FormatInt(1+m.n(4), 10) + ":5060"
		r.Verstat = ""
		x5u = "https://cert.stirgate.example.net/shaken/sp.pem"
	} else {
		r.Realm, r.Direction, r.Customer = "outside", "inbound", "trunk-"+strconv.FormatInt(m.n(6), 10)
		r.Source = "203.0.113." + strconv.FormatInt(1+m.n(6), 10) + ":5060"
		r.NextHop = "198.51.100." + strconv.FormatInt(m.n(250), 10) + ":5060"
		r.Verstat = "TN-Validation-Passed"
		if m.n(100) < 15 {
			x5u, r.Attest, r.OrigID, r.Verstat = "", "", "", "No-TN-Validation"
		} else if m.n(100) < 2 {
			r.Verstat, r.VerifyReason = "TN-Validation-Failed", "iat outside the freshness window (73 s)"
		}
	}
	if x5u != "" {
		r.X5U, r.IAT = x5u, at.Unix()
		var sig [64]byte
		for k := 0; k < 64; k += 8 {
			v := m.next()
			for j := range 8 {
				sig[k+j] = byte(v >> (8 * j))
			}
		}
		r.Identity = b64.EncodeToString([]byte(`{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"`+x5u+`"}`)) + "." +
			b64.EncodeToString([]byte(`{"attest":"`+r.Attest+`","dest":{"tn":["`+dest+`"]},"iat":`+strconv.FormatInt(r.IAT, 10)+
				`,"orig":{"tn":"`+orig+`"},"origid":"`+r.OrigID+`"}`)) + "." + b64.EncodeToString(sig[:]) +
			";info=<" + x5u + ">;alg=ES256;ppt=shaken"
	}
	switch v := m.n(100); {
	case v < 55:
		r.AnswerAfter = r.RingAfter + time.Duration(1000+m.n(20000))*time.Millisecond
		r.Duration = time.Duration(3000+m.n(600000)) * time.Millisecond
	case v < 70:
		r.Status, r.CancelAfter = 487, r.RingAfter+time.Duration(2000+m.n(30000))*time.Millisecond
	case v < 78:
		r.Status = 486
	case v < 85:
		r.Status = 480
	case v < 88:
		r.Status, r.RingAfter = 404, 0
	case v < 92:
		r.Status, r.RingAfter, r.Stage = 503, 0, "downstream"
		r.Reason = "next hop timed out"
	default:
		rule := [...]string{"dnc", "fraud-ani", "one-ring", "per-caller-rate"}[m.n(4)]
		r.Status, r.RingAfter, r.Stage, r.Rule, r.NextHop = 603, 0, "policy", rule, ""
		r.Reason = "blocked by " + rule
		r.Policy = "rule=" + rule + " mode=enforce action=reject status=603 number=" + orig
		if r.Direction == "outbound" {
			r.Identity, r.X5U, r.IAT, r.OrigID, r.Attest = "", "", 0, "", ""
		}
	}
	return r
}

// bigIndex is the index i of the record stored at ms (bigRecord(i).At).
func bigIndex(ms int64) int64 { return (ms - bigStart.UnixMilli()) / bigStepMs }

// bigInfo is the shared database: its path and the records it holds,
// bigRecord(first) .. bigRecord(next-1).
type bigInfo struct {
	path        string
	first, next int64
	rows        int64
}

var (
	bigMu sync.Mutex
	big   bigInfo // zero until the first bigDB
)

// bigDB returns the shared database holding at least bigRows records,
// building it or topping it up first: benchmarks that prune make room and
// the next one appends new records, so the 30 days slide forward as in
// production.
func bigDB(b *testing.B) bigInfo {
	b.Helper()
	if testing.Short() {
		b.Skip("10-million-record database: not with -short")
	}
	bigMu.Lock()
	defer bigMu.Unlock()
	if big.rows < bigRows {
		info, err := fillBig(bigPath())
		if err != nil {
			b.Fatal(err)
		}
		big = info
	}
	return big
}

// setBig records what a benchmark left in the shared database.
func setBig(b *testing.B, s *SQLite) {
	b.Helper()
	rows, first, next, err := bigSpan(context.Background(), s)
	if err != nil {
		b.Fatal(err)
	}
	bigMu.Lock()
	big.rows, big.first, big.next = rows, first, next
	bigMu.Unlock()
}

func bigPath() string {
	if p := os.Getenv("STIRGATE_RECORDS_BENCH_DB"); p != "" {
		return p
	}
	return filepath.Join(os.TempDir(), "stirgate-records-10m-v3.db")
}

// bigSpan reads how many records s holds, over all its day tables, and
// the index range they span.
func bigSpan(ctx context.Context, s *SQLite) (rows, first, next int64, err error) {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, d := range s.daysIn(time.Time{}, time.Time{}) {
		var n, dlo, dhi int64
		err := s.db.QueryRowContext(ctx, "SELECT count(*), coalesce(min(at_ms), 0), coalesce(max(at_ms), 0) FROM "+dayTable(d)).Scan(&n, &dlo, &dhi)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("count %s: %w", dayTable(d), err)
		}
		if n > 0 {
			rows, lo, hi = rows+n, min(lo, dlo), max(hi, dhi)
		}
	}
	if rows == 0 {
		return 0, 0, 0, nil
	}
	return rows, bigIndex(lo), bigIndex(hi) + 1, nil
}

// fillBig opens the database at path and appends records after the newest
// it holds until it holds bigRows: plain Writes with the indexes in place
// (a day table's indexes fit the page cache), in transactions of bigBatch.
func fillBig(path string) (bigInfo, error) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		return bigInfo{}, err
	}
	defer s.Close()
	rows, first, next, err := bigSpan(ctx, s)
	if err != nil {
		return bigInfo{}, fmt.Errorf("build %s: %w", path, err)
	}
	if rows >= bigRows {
		return bigInfo{path: path, first: first, next: next, rows: rows}, nil
	}
	missing := bigRows - rows
	fmt.Fprintf(os.Stderr, "records bench: %s holds %d records; writing %d more (batches of %d)\n", path, rows, missing, bigBatch)
	// Records are made on the other core while the previous batch is
	// written.
	batches := make(chan []Record, 2)
	go func() {
		defer close(batches)
		for i := next; i < next+missing; i += bigBatch {
			batch := make([]Record, 0, bigBatch)
			for j := i; j < min(i+bigBatch, next+missing); j++ {
				batch = append(batch, bigRecord(j))
			}
			batches <- batch
		}
	}()
	start, done := time.Now(), int64(0)
	for batch := range batches {
		if err := s.Write(ctx, batch, nil); err != nil {
			for range batches {
			}
			return bigInfo{}, fmt.Errorf("build %s: %w", path, err)
		}
		if done += int64(len(batch)); done%500_000 < bigBatch {
			fmt.Fprintf(os.Stderr, "records bench: %d/%d written, %.0f records/s\n", done, missing, float64(done)/time.Since(start).Seconds())
		}
	}
	if rows, first, next, err = bigSpan(ctx, s); err != nil {
		return bigInfo{}, fmt.Errorf("build %s: %w", path, err)
	}
	fmt.Fprintf(os.Stderr, "records bench: %d records in %s (%d written in %s, %.0f records/s)\n",
		rows, path, missing, time.Since(start).Round(time.Second), float64(missing)/time.Since(start).Seconds())
	return bigInfo{path: path, first: first, next: next, rows: rows}, nil
}

func openBig(b *testing.B, info bigInfo) *SQLite {
	b.Helper()
	s, err := OpenSQLite(context.Background(), info.path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// percentile of sorted d (p in [0,1]).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[max(0, min(len(d)-1, int(math.Ceil(p*float64(len(d))))-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkRecords10MQuery is the traceback search over 10 million
// records: each op is one Search (limit 100, newest first, as the API and
// `stirgate trace` ask) for a random stored call, found again by a
// 5-minute window that holds it plus its number (number: orig or dest),
// its orig, its dest, both, or its Call-ID; and by Call-ID or origid
// alone (no window: every day table is asked). It reports p50, p99 and
// max latency in ms, the rows a query returned and how many queries ran
// (a kind stops after kindBudget: a query plan that scans would otherwise
// run for hours); every query must find its call (missed: the fraction
// that did not). The goal: p99 <= 100 ms for the window plus a
// number. With -v it logs each kind's query plan in one day's table.
//
//	go test -run '^$' -bench Records10MQuery -benchtime 1000x -timeout 0 -v ./policy/records/
func BenchmarkRecords10MQuery(b *testing.B) {
	const kindBudget = 2 * time.Minute
	info := bigDB(b)
	s := openBig(b, info)
	ctx := context.Background()
	window := func(r *Record, m *mix) (time.Time, time.Time) {
		from := r.At.Add(-time.Duration(m.n(int64(5 * time.Minute))))
		return from, from.Add(5 * time.Minute)
	}
	for _, k := range []struct {
		name string
		q    func(r *Record, m *mix) Query
	}{
		{"window+number", func(r *Record, m *mix) Query {
			f, t := window(r, m)
			n := r.Orig
			if m.n(2) == 0 {
				n = r.Dest
			}
			return Query{From: f, To: t, Number: n}
		}},
		{"window+orig", func(r *Record, m *mix) Query { f, t := window(r, m); return Query{From: f, To: t, Orig: r.Orig} }},
		{"window+dest", func(r *Record, m *mix) Query { f, t := window(r, m); return Query{From: f, To: t, Dest: r.Dest} }},
		{"window+orig+dest", func(r *Record, m *mix) Query {
			f, t := window(r, m)
			return Query{From: f, To: t, Orig: r.Orig, Dest: r.Dest}
		}},
		{"window+call-id", func(r *Record, m *mix) Query { f, t := window(r, m); return Query{From: f, To: t, CallID: r.CallID} }},
		{"call-id", func(r *Record, _ *mix) Query { return Query{CallID: r.CallID} }},
		{"origid", func(r *Record, _ *mix) Query { return Query{OrigID: r.OrigID} }},
	} {
		b.Run(k.name, func(b *testing.B) {
			m := mix{uint64(len(k.name))}
			probe := bigRecord(info.next - 1)
			for i := info.next - 2; probe.OrigID == ""; i-- { // a call with an origid for that kind's plan
				probe = bigRecord(i)
			}
			plan, err := explain(ctx, s, dayTable(dayOf(probe.At)), k.q(&probe, &m))
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("plan in %s: %s", dayTable(dayOf(probe.At)), plan)
			lat := make([]time.Duration, 0, b.N)
			var rows, missed int
			b.ResetTimer()
			for start := time.Now(); len(lat) < b.N; {
				if time.Since(start) > kindBudget {
					b.Logf("stopped after %d queries: %s is this kind's budget", len(lat), kindBudget)
					break
				}
				r := bigRecord(info.first + m.n(info.next-info.first))
				for k.name == "origid" && r.OrigID == "" { // about a quarter of calls have none
					r = bigRecord(info.first + m.n(info.next-info.first))
				}
				q := k.q(&r, &m)
				t := time.Now()
				got, err := Search(ctx, s, q)
				lat = append(lat, time.Since(t))
				if err != nil {
					b.Fatal(err)
				}
				rows += len(got)
				if !slices.ContainsFunc(got, func(g Record) bool { return g.CallID == r.CallID }) {
					missed++
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(ms(percentile(lat, 0.5)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
			b.ReportMetric(float64(rows)/float64(len(lat)), "rows/query")
			b.ReportMetric(float64(missed)/float64(len(lat)), "missed")
			b.ReportMetric(float64(len(lat)), "queries")
			if missed*100 > len(lat) {
				b.Fatalf("%d of %d queries did not find their call", missed, len(lat))
			}
		})
	}
}

// explain is SQLite's plan for Search(q) in one day's table, one step per
// "; ".
func explain(ctx context.Context, s *SQLite, table string, q Query) (string, error) {
	q.Limit = 100
	query, args := selectCalls(table, q, questionMark)
	rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	defer rows.Close()
	var out string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", fmt.Errorf("explain: %w", err)
		}
		if out != "" {
			out += "; "
		}
		out += detail
	}
	return out, rows.Err()
}

// BenchmarkRecords10MBytes is the database's size per stored record:
// the file plus its WAL and shared-memory index, divided by the rows (the
// op itself is a stat). It also reports the pages SQLite keeps free for
// reuse after pruning, and, from dbstat, what one whole day's table and
// each of its indexes take per record.
//
//	go test -run '^$' -bench Records10MBytes -benchtime 1x -timeout 0 -v ./policy/records/
func BenchmarkRecords10MBytes(b *testing.B) {
	info := bigDB(b)
	s := openBig(b, info)
	b.ResetTimer()
	var size int64
	for range b.N {
		size = 0
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if st, err := os.Stat(info.path + suffix); err == nil {
				size += st.Size()
			}
		}
	}
	b.StopTimer()
	var pageSize, free int64
	if err := s.db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		b.Fatal(err)
	}
	if err := s.db.QueryRow("PRAGMA freelist_count").Scan(&free); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/float64(info.rows), "bytes/record")
	b.ReportMetric(float64(free*pageSize)/float64(info.rows), "free-bytes/record")
	b.ReportMetric(float64(info.rows), "records")
	b.ReportMetric(float64(len(s.daysIn(time.Time{}, time.Time{}))), "day-tables")

	// One whole day: the second newest (the newest is still filling).
	days := s.daysIn(time.Time{}, time.Time{})
	if len(days) < 2 {
		return
	}
	t := dayTable(days[1])
	var n int64
	if err := s.db.QueryRow("SELECT count(*) FROM " + t).Scan(&n); err != nil {
		b.Fatal(err)
	}
	rows, err := s.db.Query("SELECT name, sum(pgsize) FROM dbstat WHERE name = ? OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = ?) GROUP BY name ORDER BY 2 DESC", t, t)
	if err != nil {
		b.Logf("no dbstat: %v", err)
		return
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var name string
		var bytes int64
		if err := rows.Scan(&name, &bytes); err != nil {
			b.Fatal(err)
		}
		total += bytes
		b.Logf("%s: %.0f bytes/record (%d records)", name, float64(bytes)/float64(n), n)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/float64(n), "day-bytes/record")
}

// timedStore times the Writer's batch writes.
type timedStore struct {
	Store
	mu     sync.Mutex
	writes []timedWrite
}

type timedWrite struct {
	start, end time.Time
	n          int
	err        error
}

func (t *timedStore) Write(ctx context.Context, recs []Record, ends []End) error {
	start := time.Now()
	err := t.Store.Write(ctx, recs, ends)
	t.mu.Lock()
	t.writes = append(t.writes, timedWrite{start, time.Now(), len(recs) + len(ends), err})
	t.mu.Unlock()
	return err
}

// writeStats are the batch writes that overlapped [from, to): their p99
// and max latency, the longest time between two successful writes (from
// from), and how many failed.
func (t *timedStore) writeStats(from, to time.Time) (p99, worst, gap time.Duration, failed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lat []time.Duration
	last := from
	for _, wr := range t.writes {
		if wr.end.Before(from) || !wr.start.Before(to) {
			continue
		}
		lat = append(lat, wr.end.Sub(wr.start))
		if wr.err != nil {
			failed++
			continue
		}
		gap = max(gap, wr.end.Sub(last))
		last = wr.end
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		worst = lat[len(lat)-1]
	}
	return percentile(lat, 0.99), worst, gap, failed
}

// feeder is the call path: it Adds records bigRecord(from), from+1, ...
// to a Writer at rate per second, paced by the clock, until stop is
// closed or limit records (limit 0: no limit), and times each Add.
type feeder struct {
	added    int64
	addLat   []time.Duration
	maxQueue int
	done     chan struct{}
}

func feed(w *Writer, rate int, from, limit int64, stop <-chan struct{}) *feeder {
	f := &feeder{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		start := time.Now()
		for {
			select {
			case <-stop:
				return
			default:
			}
			due := int64(time.Since(start).Seconds() * float64(rate))
			if limit > 0 {
				due = min(due, limit)
			}
			for ; f.added < due; f.added++ {
				r := bigRecord(from + f.added)
				t := time.Now()
				w.Add(&r)
				f.addLat = append(f.addLat, time.Since(t))
				f.maxQueue = max(f.maxQueue, len(w.q))
			}
			if limit > 0 && f.added >= limit {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return f
}

// report reports Add's p99 and max as timed around the call (the call
// path's cost: Add never waits, but the max includes the goroutine being
// descheduled on 2 busy cores) and the deepest the queue got.
func (f *feeder) report(b *testing.B) {
	slices.Sort(f.addLat)
	if len(f.addLat) > 0 {
		b.ReportMetric(float64(percentile(f.addLat, 0.99))/float64(time.Microsecond), "add-p99-µs")
		b.ReportMetric(float64(f.addLat[len(f.addLat)-1])/float64(time.Microsecond), "add-max-µs")
	}
	b.ReportMetric(float64(f.maxQueue), "queue-max")
}

// writerQueue is stirgate's default records.queue.
const writerQueue = 20_000

// BenchmarkRecords10MPrune is retention pruning beside the call path, on
// the 10 million records while a Writer (stirgate's default queue) takes
// 2,000 records/s through Add, as the edge would. Each op of day drops the
// oldest whole day (about 333,000 records: a DROP TABLE); each op of hour
// deletes the oldest hour of the oldest day (about 14,000 records, in
// chunks), which is what stirgate's hourly pruning does with a cut at
// now minus the retention. It reports the prune time and rate; Add's p99
// and max; and of the Writer's batch writes while pruning ran: p99 and
// max latency, the longest time between two successful writes, the
// deepest the queue got and the records dropped; the same write figures
// for the 2 s before pruning (base-) show what pruning added. The
// Writer's records continue the stored timeline.
//
//	go test -run '^$' -bench Records10MPrune -benchtime 1x -timeout 0 -v ./policy/records/
func BenchmarkRecords10MPrune(b *testing.B) {
	for _, k := range []struct {
		name string
		cut  func(oldest time.Time) time.Time
	}{
		{"day", func(oldest time.Time) time.Time { return time.UnixMilli((dayOf(oldest) + 1) * dayMs) }},
		{"hour", func(oldest time.Time) time.Time { return oldest.Add(time.Hour) }},
	} {
		b.Run(k.name, func(b *testing.B) { benchPrune(b, k.cut) })
	}
}

func benchPrune(b *testing.B, cut func(oldest time.Time) time.Time) {
	const rate = 2000
	info := bigDB(b)
	s := openBig(b, info)
	ctx := context.Background()
	oldest := bigRecord(info.first).At
	if oldest.UnixMilli()%dayMs != 0 {
		// Start from a whole day: the oldest day's rows an earlier run
		// left go first, untimed.
		if _, err := s.Prune(ctx, time.UnixMilli((dayOf(oldest)+1)*dayMs)); err != nil {
			b.Fatal(err)
		}
		setBig(b, s)
		bigMu.Lock()
		info = big
		bigMu.Unlock()
	}

	ts := &timedStore{Store: s}
	w := NewWriter(ts, writerQueue, slog.New(slog.DiscardHandler)) // dropped is reported
	wctx, cancel := context.WithCancel(ctx)
	go w.Run(wctx, 30*time.Second)
	stop := make(chan struct{})
	f := feed(w, rate, info.next, 0, stop)

	time.Sleep(2 * time.Second)
	baseEnd := time.Now()
	var pruned int64
	var pruneTime time.Duration
	first := info.first
	b.ResetTimer()
	for range b.N {
		before := cut(bigRecord(first).At)
		t := time.Now()
		n, err := s.Prune(ctx, before)
		pruneTime += time.Since(t)
		if err != nil {
			b.Fatal(err)
		}
		pruned += n
		first = bigIndex(before.UnixMilli()) + 1
	}
	b.StopTimer()
	pruneEnd := time.Now()
	time.Sleep(500 * time.Millisecond) // the batches queued during the last statement
	close(stop)
	<-f.done
	cancel()
	<-w.Done()
	setBig(b, s)

	p99, worst, gap, failed := ts.writeStats(baseEnd, pruneEnd)
	bp99, bworst, bgap, bfailed := ts.writeStats(baseEnd.Add(-2*time.Second), baseEnd)
	b.ReportMetric(ms(pruneTime)/float64(b.N), "prune-ms/op")
	b.ReportMetric(float64(pruned)/pruneTime.Seconds(), "pruned/s")
	b.ReportMetric(float64(pruned)/float64(b.N), "pruned/op")
	f.report(b)
	b.ReportMetric(ms(p99), "write-p99-ms")
	b.ReportMetric(ms(worst), "write-max-ms")
	b.ReportMetric(ms(gap), "flush-gap-max-ms")
	b.ReportMetric(ms(bp99), "base-write-p99-ms")
	b.ReportMetric(ms(bworst), "base-write-max-ms")
	b.ReportMetric(ms(bgap), "base-flush-gap-max-ms")
	b.ReportMetric(float64(w.Dropped()), "dropped")
	if failed+bfailed > 0 || w.Failed() > 0 {
		b.Errorf("%d batch writes failed (%d records)", failed+bfailed, w.Failed())
	}
	b.Logf("added %d records at %d/s; pruned %d in %s", f.added, rate, pruned, pruneTime.Round(time.Millisecond))
}

// discardStore takes the Writer's batches and keeps nothing: the Add
// benchmark measures the queue, not the database.
type discardStore struct{ Store }

func (discardStore) Write(context.Context, []Record, []End) error { return nil }

// BenchmarkRecordsAdd is what recording costs the call path (the issue's
// goal: <= 2 µs and no allocation beyond the record itself). add is
// Writer.Add of a record the caller already has, into a queue with room
// (drained with the timer stopped); new-record-add allocates the record
// first, as the edge will (its one allocation is the record);
// new-record-add-with-run does that back to back while Run empties the
// queue on the other core into a database that keeps nothing, the worst
// case for the shared channel (dropped/op: how often Add outran Run).
//
//	go test -run '^$' -bench RecordsAdd -benchmem ./policy/records/
func BenchmarkRecordsAdd(b *testing.B) {
	tmpl := bigRecord(1)
	quiet := slog.New(slog.DiscardHandler)
	drained := func(b *testing.B, add func(w *Writer) bool) {
		const queueLen = 4096
		w := NewWriter(discardStore{}, queueLen, quiet)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%queueLen == 0 && i > 0 {
				b.StopTimer()
				for len(w.q) > 0 {
					<-w.q
				}
				b.StartTimer()
			}
			if !add(w) {
				b.Fatal("dropped with room in the queue")
			}
		}
	}
	b.Run("add", func(b *testing.B) {
		r := tmpl
		drained(b, func(w *Writer) bool { return w.Add(&r) })
	})
	newRecord := func(w *Writer) bool {
		r := new(Record)
		*r = tmpl
		return w.Add(r)
	}
	b.Run("new-record-add", func(b *testing.B) { drained(b, newRecord) })
	b.Run("new-record-add-with-run", func(b *testing.B) {
		w := NewWriter(discardStore{}, 65536, quiet)
		ctx, cancel := context.WithCancel(context.Background())
		go w.Run(ctx, time.Second)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			newRecord(w)
		}
		b.StopTimer()
		cancel()
		<-w.Done()
		b.ReportMetric(float64(w.Dropped())/float64(b.N), "dropped/op")
	})
}

// BenchmarkRecords10MInsert is the sustained insert rate at the issue's
// size: the Writer's batches (512 records, one transaction each) of new
// calls appended to the 10 million (into the newest day's table, and the
// next day's when the timeline crosses midnight), whose Call-ID, origid
// and numbers land at random places in that day's indexes
// (BenchmarkWriterInsert's keys only grow). It reports records/s and the
// batch write latency p99 and max; afterwards as many of the oldest
// records are pruned (untimed), so the database stays at 10 million.
//
//	go test -run '^$' -bench Records10MInsert -benchtime 200000x -timeout 0 ./policy/records/
func BenchmarkRecords10MInsert(b *testing.B) {
	info := bigDB(b)
	s := openBig(b, info)
	ctx := context.Background()
	batch := make([]Record, 0, batchSize)
	var lat []time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n += len(batch) {
		b.StopTimer()
		batch = batch[:0]
		for i := n; i < min(n+batchSize, b.N); i++ {
			batch = append(batch, bigRecord(info.next+int64(i)))
		}
		b.StartTimer()
		t := time.Now()
		if err := s.Write(ctx, batch, nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	var total time.Duration
	for _, d := range lat {
		total += d
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/total.Seconds(), "records/s")
	b.ReportMetric(ms(percentile(lat, 0.99)), "batch-p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "batch-max-ms")
	if _, err := s.Prune(ctx, bigRecord(info.first+int64(b.N)).At); err != nil {
		b.Fatal(err)
	}
	setBig(b, s)
}

// BenchmarkRecords10MWriter is the side-by-side case: the call path Adds
// b.N new calls at a steady rate (records/s, per sub-benchmark) to a
// Writer with stirgate's default queue, which stores them in the 10
// million. The goal: zero dropped records at the rates stirgate
// sustains (the Writer must keep up with 5,000 calls/s, and 20,000
// records/s is the insert goal). It reports the rate reached, the records
// dropped, the deepest the queue got, Add's p99 and max, and the batch
// writes' p99 and max; afterwards as many of the oldest records are
// pruned (untimed).
//
//	go test -run '^$' -bench Records10MWriter -benchtime 300000x -timeout 0 ./policy/records/
func BenchmarkRecords10MWriter(b *testing.B) {
	for _, rate := range []int{5_000, 20_000} {
		b.Run("rate="+strconv.Itoa(rate), func(b *testing.B) {
			info := bigDB(b)
			s := openBig(b, info)
			ts := &timedStore{Store: s}
			w := NewWriter(ts, writerQueue, slog.New(slog.DiscardHandler)) // dropped is reported
			ctx, cancel := context.WithCancel(context.Background())
			go w.Run(ctx, 5*time.Minute)
			b.ResetTimer()
			start := time.Now()
			f := feed(w, rate, info.next, int64(b.N), nil)
			<-f.done
			added := time.Since(start)
			cancel() // Run stores what is queued, then returns
			<-w.Done()
			b.StopTimer()
			p99, worst, gap, failed := ts.writeStats(start, time.Now())
			b.ReportMetric(float64(f.added)/added.Seconds(), "added/s")
			b.ReportMetric(float64(w.Written())/b.Elapsed().Seconds(), "stored/s")
			b.ReportMetric(float64(w.Dropped()), "dropped")
			f.report(b)
			b.ReportMetric(ms(p99), "write-p99-ms")
			b.ReportMetric(ms(worst), "write-max-ms")
			b.ReportMetric(ms(gap), "flush-gap-max-ms")
			if failed > 0 || w.Failed() > 0 {
				b.Errorf("%d batch writes failed (%d records)", failed, w.Failed())
			}
			if _, err := s.Prune(context.Background(), bigRecord(info.first+int64(b.N)).At); err != nil {
				b.Fatal(err)
			}
			setBig(b, s)
		})
	}
}

// BenchmarkRecordsBusyDay is the insert rate into one day's table as it
// grows, in a new database: b.N calls of one UTC day (the 10-million set
// holds 333,000 a day; a node at 1,000 calls/s stores 86 million), written
// in the Writer's batches. A day's table is fast while its indexes fit
// SQLite's page cache; this shows where the rate falls. It reports the
// rate over the first and the last tenth of the day and, with -v, logs
// each tenth.
//
//	go test -run '^$' -bench RecordsBusyDay -benchtime 2000000x -timeout 0 -v ./policy/records/
func BenchmarkRecordsBusyDay(b *testing.B) {
	if testing.Short() {
		b.Skip("not with -short")
	}
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "day.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	step := max(1, dayMs/int64(b.N)) // ms between calls: one day holds them all
	batch := make([]Record, 0, batchSize)
	tenth := max(1, b.N/10)
	var seg, first, last time.Duration
	var segN, firstN, lastN int
	b.ResetTimer()
	for n := 0; n < b.N; n += len(batch) {
		b.StopTimer()
		batch = batch[:0]
		for i := n; i < min(n+batchSize, b.N); i++ {
			r := bigRecord(int64(i))
			r.At = bigStart.Add(time.Duration(int64(i)*step) * time.Millisecond)
			batch = append(batch, r)
		}
		b.StartTimer()
		t := time.Now()
		if err := s.Write(ctx, batch, nil); err != nil {
			b.Fatal(err)
		}
		seg += time.Since(t)
		segN += len(batch)
		if end := n + len(batch); end/tenth != n/tenth || end == b.N {
			if first == 0 {
				first, firstN = seg, segN
			}
			last, lastN = seg, segN
			b.Logf("%d records in the day: %.0f records/s over the last %d", end, float64(segN)/seg.Seconds(), segN)
			seg, segN = 0, 0
		}
	}
	b.StopTimer()
	if b.N >= 10 {
		b.ReportMetric(float64(firstN)/first.Seconds(), "first-tenth-records/s")
		b.ReportMetric(float64(lastN)/last.Seconds(), "last-tenth-records/s")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
