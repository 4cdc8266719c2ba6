package sippfiles

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInviteTimings(t *testing.T) {
	// date, time, epoch seconds, S|R, Call-ID, CSeq, first line
	const trace = "2026-12-07\t05:00:00.000000\t1000.000100\tS\tc1\tCSeq:1 INVITE\tINVITE sip:x@y SIP/2.0\n" +
		"2026-12-07\t05:00:00.000000\t1000.000200\tS\tc2\tCSeq:1 INVITE\tINVITE sip:x@y SIP/2.0\n" +
		"2026-12-07\t05:00:00.000000\t1000.000400\tR\tc1\tCSeq:1 INVITE\tSIP/2.0 100 Trying\n" +
		"2026-12-07\t05:00:00.000000\t1000.500100\tS\tc1\tCSeq:1 INVITE\tINVITE sip:x@y SIP/2.0\n" + // retransmission
		"2026-12-07\t05:00:00.000000\t1000.003100\tR\tc1\tCSeq:1 INVITE\tSIP/2.0 200 OK\n" +
		"2026-12-07\t05:00:00.000000\t1000.004100\tR\tc1\tCSeq:1 INVITE\tSIP/2.0 200 OK\n" + // 200 retransmitted
		"2026-12-07\t05:00:00.000000\t1000.005000\tS\tc1\tCSeq:1 ACK\tACK sip:x@y SIP/2.0\n" +
		"2026-12-07\t05:00:00.000000\t1000.006000\tR\tc3\tCSeq:1 INVITE\tSIP/2.0 503 Service Unavailable\n" // never sent: ignored
	path := filepath.Join(t.TempDir(), "shortmsg.csv")
	if err := os.WriteFile(path, []byte(trace), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, err := InviteTimings(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0].CallID != "c1" || calls[1].CallID != "c2" {
		t.Fatalf("calls %+v, want c1 then c2", calls)
	}
	if c := calls[0]; c.Code != 200 || c.Wait() != 3*time.Millisecond {
		t.Errorf("c1: %d after %v, want 200 after 3ms (the first INVITE to the first final)", c.Code, c.Wait())
	}
	if c := calls[1]; c.Code != 0 || c.Wait() != 0 {
		t.Errorf("c2: %d after %v, want no final response", c.Code, c.Wait())
	}
	if _, err := InviteTimings(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file is not an error")
	}
}
