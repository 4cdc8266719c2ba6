package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStartAndStop: the server takes connections to fresh databases
// that keep what is written, and is gone once its test has ended.
func TestStartAndStop(t *testing.T) {
	ctx := context.Background()
	var s *Server
	t.Run("running", func(t *testing.T) {
		s = Start(t, "fsync=off")
		a, b := s.NewDatabase(t), s.NewDatabase(t)
		if a == b {
			t.Fatalf("two databases with one DSN: %s", a)
		}
		conn, err := pgx.Connect(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')"); err != nil {
			t.Fatal(err)
		}
		var v string
		if err := conn.QueryRow(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != "kept" {
			t.Fatalf("read back %q (%v)", v, err)
		}
		other, err := pgx.Connect(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close(ctx)
		if _, err := other.Exec(ctx, "SELECT v FROM t"); err == nil {
			t.Error("the second database sees the first's table")
		}
	})
	if s == nil {
		return // skipped: no PostgreSQL here
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(cctx, s.DSN("postgres")); err == nil {
		_ = conn.Close(ctx)
		t.Fatalf("postgres on port %d still takes connections after its test ended", s.Port)
	}
}
