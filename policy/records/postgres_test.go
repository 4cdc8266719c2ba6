package records

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stirgate/stirgate/policy/records/pgtest"
)

// openPostgresTest opens a Postgres store on dsn, closed when tb ends.
func openPostgresTest(tb testing.TB, dsn string) *Postgres {
	tb.Helper()
	p, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// TestPostgres runs the Store contract on a real PostgreSQL, a fresh
// database for every open, and what only several nodes sharing one
// database can show.
func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t, "fsync=off")
	testContract(t, func(t testing.TB) Store { return openPostgresTest(t, srv.NewDatabase(t)) })

	t.Run("newer schema refused", func(t *testing.T) { testPostgresNewerSchema(t, srv.NewDatabase(t)) })
	t.Run("nodes migrate together", func(t *testing.T) { testPostgresConcurrentOpen(t, srv.NewDatabase(t)) })
	t.Run("reopen keeps records", func(t *testing.T) { testPostgresReopen(t, srv.NewDatabase(t)) })
	t.Run("audit IDs in commit order", func(t *testing.T) { testPostgresAuditCommitOrder(t, srv.NewDatabase(t)) })
	t.Run("bad input", func(t *testing.T) { testPostgresBadInput(t, srv.NewDatabase(t)) })
	t.Run("byte order in any locale", func(t *testing.T) {
		testPostgresByteOrder(t, srv.NewDatabase(t, "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"))
	})
}

// testPostgresNewerSchema: a database written by a newer stirgate is
// refused with a message that says so, and left as it is.
func testPostgresNewerSchema(t *testing.T, dsn string) {
	ctx := context.Background()
	p := openPostgresTest(t, dsn)
	newer := len(postgresMigrations) + 1
	if _, err := p.pool.Exec(ctx, "UPDATE schema_version SET version = $1", newer); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	_, err := OpenPostgres(ctx, dsn)
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("open: %v, want ErrNewerSchema", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v, rows int
	if err := conn.QueryRow(ctx, "SELECT max(version), count(*) FROM schema_version").Scan(&v, &rows); err != nil || v != newer || rows != 1 {
		t.Errorf("schema version after the refusal: %d in %d rows (%v), want %d in 1, untouched", v, rows, err, newer)
	}
}

// testPostgresConcurrentOpen: nodes that start at once against a new
// database all open it; the migrations ran once.
func testPostgresConcurrentOpen(t *testing.T, dsn string) {
	ctx := context.Background()
	const nodes = 6
	errs := make([]error, nodes)
	stores := make([]*Postgres, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = OpenPostgres(ctx, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	// Every node writes and sees every other node's records.
	for i, s := range stores {
		if err := s.Write(ctx, []Record{sample(i)}, nil); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	got, err := Search(ctx, stores[0], Query{})
	if err != nil || len(got) != nodes {
		t.Errorf("%d records (%v), want %d", len(got), err, nodes)
	}
	var v int
	if err := stores[0].pool.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v); err != nil || v != len(postgresMigrations) {
		t.Errorf("schema version %d (%v), want %d", v, err, len(postgresMigrations))
	}
}

// testPostgresReopen: a second open migrates nothing and finds the
// records of the first.
func testPostgresReopen(t *testing.T, dsn string) {
	ctx := context.Background()
	p := openPostgresTest(t, dsn)
	if err := p.Write(ctx, []Record{sample(1)}, nil); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	p2 := openPostgresTest(t, dsn)
	if got, err := Search(ctx, p2, Query{}); err != nil || len(got) != 1 || got[0] != sample(1) {
		t.Fatalf("after reopening: %+v (%v), want sample 1", got, err)
	}
}

// testPostgresAuditCommitOrder: a node that read LastChange never misses a
// change that commits after it: a transaction that drew an audit ID and
// has not committed holds back the next one. Without that, B (drawn
// second) commits first, a poller sees B's ID, and A, committed later
// with a lower ID, is never noticed.
func testPostgresAuditCommitOrder(t *testing.T, dsn string) {
	ctx := context.Background()
	p := openPostgresTest(t, dsn)
	a, err := p.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Rollback(ctx) }()
	if err := insertAuditTx(ctx, a, Change{At: t0, Actor: "node-a", Action: "list.add"}); err != nil {
		t.Fatal(err)
	}
	// B, on another connection: its view right after its change is what
	// a poller on B's node would read.
	type view struct {
		last int64
		seen []Change
		err  error
	}
	done := make(chan view, 1)
	go func() {
		var v view
		if v.err = p.Audit(ctx, Change{At: t0, Actor: "node-b", Action: "complaint"}); v.err == nil {
			v.last, v.err = p.LastChange(ctx)
		}
		if v.err == nil {
			v.seen, v.err = p.Changes(ctx, 0, 10)
		}
		done <- v
	}()
	// A commits once B has finished or waits for a lock (bounded).
	var b view
	finished := false
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		select {
		case b = <-done:
			finished = true
		default:
		}
		if finished {
			break
		}
		var waiting int
		if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory'
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B neither finished nor waited for A in 10 s")
		}
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !finished {
		select {
		case b = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("B still waiting 10 s after A committed")
		}
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	all, err := p.Changes(ctx, 0, 10)
	if err != nil || len(all) != 2 {
		t.Fatalf("trail: %+v (%v), want 2 lines", all, err)
	}
	seen := map[int64]bool{}
	for _, c := range b.seen {
		seen[c.ID] = true
	}
	for _, c := range all {
		if c.ID <= b.last && !seen[c.ID] {
			t.Errorf("%s's change (ID %d) committed after a poller had seen ID %d: it is never noticed", c.Actor, c.ID, b.last)
		}
	}
}

// testPostgresBadInput: nonsense from a caller is an error, not a crash
// or a silent wrong answer.
func testPostgresBadInput(t *testing.T, dsn string) {
	ctx := context.Background()
	if _, err := OpenPostgres(ctx, "host=127.0.0.1 port=notaport"); err == nil {
		t.Error("a DSN with a bad port opened")
	}
	p := openPostgresTest(t, dsn)
	if _, err := p.RuleHits(ctx, t0, 0); err == nil {
		t.Error("rule hits in buckets of 0 answered")
	}
	if err := p.Write(ctx, nil, nil); err != nil {
		t.Errorf("an empty write: %v", err)
	}
	if err := p.Audit(ctx, Change{At: t0, Actor: "a", Action: "x"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		limit, want int
	}{{0, 0}, {-1, 1}, {5, 1}} {
		if got, err := p.Changes(ctx, 0, tc.limit); err != nil || len(got) != tc.want {
			t.Errorf("changes with limit %d: %d lines (%v), want %d", tc.limit, len(got), err, tc.want)
		}
	}
}

// testPostgresByteOrder: rules and list entries come in the order SQLite
// gives them (bytes: "Z" before "a"), also in a database whose locale
// sorts letters alphabetically.
func testPostgresByteOrder(t *testing.T, dsn string) {
	ctx := context.Background()
	p := openPostgresTest(t, dsn)
	var recs []Record
	for i, rule := range []string{"a-rate", "Z-block", "a-rate", "Z-block"} {
		r := sample(i)
		r.Rule = rule
		recs = append(recs, r)
	}
	if err := p.Write(ctx, recs, nil); err != nil {
		t.Fatal(err)
	}
	hits, err := p.RuleHits(ctx, t0, time.Hour)
	if err != nil || len(hits) != 2 || hits[0].Rule != "Z-block" || hits[1].Rule != "a-rate" || hits[0].Calls != 2 {
		t.Errorf("rule hits: %v (%v), want Z-block then a-rate, 2 each", hits, err)
	}
	for _, e := range []Entry{{List: "dnc", Number: "a1"}, {List: "dnc", Number: "Z1"}, {List: "Block", Number: "1"}} {
		if err := p.PutEntry(ctx, e, Change{At: t0, Actor: "t", Action: "list.add"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.Entries(ctx, "", "", t0)
	var order []string
	for _, e := range got {
		order = append(order, e.List+"/"+e.Number)
	}
	if want := "[Block/1 dnc/Z1 dnc/a1]"; err != nil || fmt.Sprint(order) != want {
		t.Errorf("entries: %v (%v), want %s", order, err, want)
	}
}

// BenchmarkPostgresWrite is the sustained insert rate into PostgreSQL
// (batches of 512 by COPY, one transaction each, the server with its
// default durability: fsync and synchronous_commit on).
//
//	go test -run '^$' -bench PostgresWrite -benchtime 200000x ./policy/records/
func BenchmarkPostgresWrite(b *testing.B) {
	srv := pgtest.Start(b)
	p := openPostgresTest(b, srv.NewDatabase(b))
	ctx := context.Background()
	batch := make([]Record, batchSize)
	b.ResetTimer()
	n := 0
	for n < b.N {
		k := min(batchSize, b.N-n)
		for i := range k {
			batch[i] = sample(n + i)
		}
		if err := p.Write(ctx, batch[:k], nil); err != nil {
			b.Fatal(err)
		}
		n += k
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
