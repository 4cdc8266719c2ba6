package integration

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// traceRecord is what `stirgate trace --json` prints per call (the admin
// API's record).
type traceRecord struct {
	At           time.Time `json:"at"`
	CallID       string    `json:"call_id"`
	Realm        string    `json:"realm"`
	Direction    string    `json:"direction"`
	Source       string    `json:"source"`
	Transport    string    `json:"transport"`
	Customer     string    `json:"customer"`
	FromTN       string    `json:"from_tn"`
	Orig         string    `json:"orig"`
	Dest         string    `json:"dest"`
	ToTN         string    `json:"to_tn"`
	RequestURI   string    `json:"request_uri"`
	Identity     string    `json:"identity"`
	Attest       string    `json:"attest"`
	OrigID       string    `json:"origid"`
	X5U          string    `json:"x5u"`
	IAT          int64     `json:"iat"`
	VerifyReason string    `json:"verify_reason"`
	NextHop      string    `json:"next_hop"`
	Status       int       `json:"status"`
	Stage        string    `json:"stage"`
	AnswerMs     int64     `json:"answer_ms"`
	DurationMs   int64     `json:"duration_ms"`
}

// runTrace runs `stirgate trace` with args and returns stdout and the exit
// code.
func runTrace(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, stirgateBinary(t), append([]string{"trace"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("stirgate trace: %v", err)
		}
		code = ee.ExitCode()
	}
	if stderr.Len() > 0 {
		t.Logf("stirgate trace stderr: %s", stderr.String())
	}
	return string(out), code
}

func parseTraceJSON(t *testing.T, out string) []traceRecord {
	t.Helper()
	var recs []traceRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var r traceRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("trace --json line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestTraceback places signed SIPp calls through stirgate and answers the
// traceback question for them the way an operator would: `stirgate trace`
// names the upstream that delivered each call (source, transport,
// customer), the attestation, origid and x5u it was signed with, the next
// hop and the decision, and the call's answer time and duration once the
// BYE went through. The records survive a restart of the node, and the
// admin API finds the same calls with the token only.
func TestTraceback(t *testing.T) {
	requireSipp(t)
	const calls = 5
	cfg := newProxyConfig(t)
	base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
	pki := testPKI(t, base)
	dir := t.TempDir()
	db := filepath.Join(dir, "records.db")
	token, tokenFile := adminToken(t)
	cfg.TokenFile = tokenFile
	cfg.Extra = attestYAML(pki, base+"sp.pem") + fmt.Sprintf("records:\n  backend: sqlite\n  path: %q\n", db)
	p := startProxy(t, cfg)
	cfgPath := p.cmd.Args[len(p.cmd.Args)-1]

	start := time.Now().UTC()
	uas := startSipp(t, sippRun{Name: "uas", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: calls, Timeout: 60 * time.Second})
	uac := runSipp(t, sippRun{Name: "uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Calls: calls, Rate: 10, Timeout: 60 * time.Second})
	uac.require(t, calls)
	uas.Wait(t).require(t, calls)

	// The BYE ends each dialog: its duration is written shortly after.
	var recs []traceRecord
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 100 && time.Now().Before(deadline); i++ {
		out, code := runTrace(t, "--config", cfgPath, "--dest", "+1 555 987 0002", "--at", start.Format(time.RFC3339), "--json")
		if code == 0 {
			recs = parseTraceJSON(t, out)
			ended := 0
			for _, r := range recs {
				if r.DurationMs > 0 {
					ended++
				}
			}
			if len(recs) == calls && ended == calls {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(recs) != calls {
		t.Fatalf("trace found %d calls, want %d", len(recs), calls)
	}
	origids := map[string]bool{}
	for _, r := range recs {
		if !strings.HasPrefix(r.Source, "127.0.0.1:") || r.Transport != "UDP" || r.Realm != "inside" || r.Direction != "outbound" || r.Customer != "it-pbx" {
			t.Errorf("upstream of %s: source %q transport %q realm %q direction %q customer %q", r.CallID, r.Source, r.Transport, r.Realm, r.Direction, r.Customer)
		}
		if r.Orig != "15551230001" || r.Dest != "15559870002" || r.FromTN != "15551230001" || r.ToTN != "15559870002" || r.RequestURI != "+15559870002" {
			t.Errorf("numbers of %s: orig %q dest %q From %q To %q R-URI user %q", r.CallID, r.Orig, r.Dest, r.FromTN, r.ToTN, r.RequestURI)
		}
		if _, err := uuid.Parse(r.OrigID); err != nil || r.Attest != "A" || r.X5U != base+"sp.pem" || !strings.Contains(r.Identity, "info=<"+base+"sp.pem>") {
			t.Errorf("identity of %s: attest %q origid %q x5u %q identity %.60q", r.CallID, r.Attest, r.OrigID, r.X5U, r.Identity)
		}
		if iat := time.Unix(r.IAT, 0); iat.Before(start.Add(-time.Second)) || iat.After(time.Now()) {
			t.Errorf("iat of %s: %s, the run started %s", r.CallID, iat, start)
		}
		origids[r.OrigID] = true
		if r.Status != 200 || r.Stage != "downstream" || r.NextHop != fmt.Sprintf("%s;transport=udp", hostPort(cfg.TrunkPort)) {
			t.Errorf("decision of %s: %d by %q, next hop %q", r.CallID, r.Status, r.Stage, r.NextHop)
		}
		if r.AnswerMs < 0 || r.DurationMs <= 0 || r.At.Before(start.Add(-time.Second)) {
			t.Errorf("timing of %s: at %s answer %d ms duration %d ms", r.CallID, r.At, r.AnswerMs, r.DurationMs)
		}
	}
	if len(origids) != calls {
		t.Errorf("%d distinct origids in %d calls", len(origids), calls)
	}

	// The same question for a person, and for an ITG portal.
	out, code := runTrace(t, "--config", cfgPath, "--call-id", recs[0].CallID)
	for _, want := range []string{"Call-ID " + recs[0].CallID, "delivered by   127.0.0.1:", "over UDP into the inside realm", "customer/trunk it-pbx", "attest A  origid " + recs[0].OrigID, "decision       200, decided by downstream", "handed to      " + hostPort(cfg.TrunkPort)} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("trace --call-id (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	out, code = runTrace(t, "--config", cfgPath, "--orig", "15551230001", "--at", start.Format(time.RFC3339), "--csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(rows) != calls+1 || rows[0][0] != "at" || rows[1][13] == "" {
		t.Errorf("trace --csv (exit %d, %v): %d rows\n%s", code, err, len(rows), out)
	}
	if _, code := runTrace(t, "--config", cfgPath, "--dest", "+1 555 000 0000", "--at", start.Format(time.RFC3339)); code != 1 {
		t.Errorf("trace of a call that never happened: exit %d, want 1", code)
	}
	if _, code := runTrace(t, "--config", cfgPath); code != 2 {
		t.Errorf("trace without a question: exit %d, want 2", code)
	}

	// State dies with the node; records do not.
	if _, err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	p = startProxy(t, cfg)
	out, code = runTrace(t, "--config", p.cmd.Args[len(p.cmd.Args)-1], "--origid", recs[0].OrigID, "--json")
	if got := parseTraceJSON(t, out); code != 0 || len(got) != 1 || got[0].CallID != recs[0].CallID {
		t.Errorf("after a restart, trace --origid found %d calls (exit %d)", len(got), code)
	}

	// The admin API answers the same search, with the token only.
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, cfg.AdminURL()+"/api/v1/records?dest=15559870002&from="+start.Add(-time.Minute).Format(time.RFC3339), nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("API without the token: %d, want 401", code)
	}
	code, body := get("Bearer " + token)
	var res struct{ Records []traceRecord }
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || len(res.Records) != calls {
		t.Errorf("API search: %d, %d records (%v)", code, len(res.Records), err)
	}
}
