package admin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/records"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
)

const testToken = "0123456789abcdef-test"

var t0 = time.Date(2026, 12, 7, 10, 2, 0, 0, time.UTC)

// fixture is the API over a real SQLite database and a compiled policy
// with a managed list and a reputation rule.
type fixture struct {
	srv     *httptest.Server
	st      *records.SQLite
	engine  *policy.Engine
	managed *policy.ManagedLists
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := records.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := policy.File{
		Lists: []policy.ListConfig{{Name: "dnc-api", Managed: true}},
		Rules: []policy.RuleConfig{
			{Name: "dnc-api", Type: "list", Lists: []string{"dnc-api"}, Action: policy.ActionConfig{Type: "reject", Code: 603}},
			{Name: "bad-reputation", Type: "reputation", Limit: 2, Window: time.Hour, Action: policy.ActionConfig{Type: "reject"}},
		},
	}
	f.ApplyDefaults()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	managed := &policy.ManagedLists{}
	e, err := policy.Compile([]policy.File{f}, nil, store.NewMemory(), managed)
	if err != nil {
		t.Fatal(err)
	}
	chain := sip.Chain{policy.Handler{Engine: e, Phase: policy.PhaseEarly}}
	api := &API{Token: testToken, Records: st, Engine: func() *policy.Engine { return e },
		Explain: func(ctx context.Context, realm string, src netip.AddrPort, invite []byte) (*sip.Call, []byte, error) {
			return sip.DryRun(ctx, chain, realm, src, invite, nil)
		},
		Now: func() time.Time { return t0.Add(time.Hour) }}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, st: st, engine: e, managed: managed}
}

// do sends a request with the token and returns status and body.
func (f *fixture) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("X-Actor", "alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func sampleRecord(i int, dest string, status int, stage, rule string) records.Record {
	return records.Record{At: t0.Add(time.Duration(i) * time.Second), CallID: "call-" + string(rune('a'+i)) + "@test",
		Realm: "inside", Direction: "outbound", Source: "127.0.0.1:5060", Transport: "UDP", Customer: "pbx",
		FromTN: "14155550100", Orig: "14155550100", Dest: dest, RequestURI: "sip:" + dest + "@trunk",
		Attest: "A", OrigID: "8b1e1e7a-0000-4000-8000-00000000000" + string(rune('0'+i)), X5U: "http://127.0.0.1/sp.pem", IAT: t0.Unix(),
		NextHop: "127.0.0.1:5100;transport=udp", Status: status, Stage: stage, Rule: rule,
		Policy: "rule=dnc-api mode=enforce action=reject matched=callee entry=" + dest}
}

// TestAPIToken: nothing under /api/v1 answers without the token.
func TestAPIToken(t *testing.T) {
	f := newFixture(t)
	for _, auth := range []string{"", "Bearer wrong-token-012345", "Basic " + testToken} {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/v1/records", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	api := &API{Token: ""} // no token file: the API is closed
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/records", nil)
	req.Header.Set("Authorization", "Bearer ")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token file: %v %v, want 401", resp.StatusCode, err)
	}
}

// TestAPIRecords: search by the traceback filters, explain a stored call,
// export CSV and JSON lines.
func TestAPIRecords(t *testing.T) {
	f := newFixture(t)
	recs := []records.Record{
		sampleRecord(1, "12025550142", 603, "policy", "dnc-api"),
		sampleRecord(2, "12025550143", 200, "downstream", ""),
		sampleRecord(3, "12025550142", 200, "downstream", ""),
	}
	recs[1].Policy, recs[2].Policy = "", ""
	if err := f.st.Write(context.Background(), recs, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		code  int
		want  []string
	}{
		{"?number=%2B1-202-555-0142", 200, []string{"call-d@test", "call-b@test"}},
		{"?decision=rejected", 200, []string{"call-b@test"}},
		{"?rule=dnc-api", 200, []string{"call-b@test"}},
		{"?from=2026-12-07T10:02:02Z&to=2026-12-07T10:02:03Z", 200, []string{"call-c@test"}},
		{"?status=200&limit=1", 200, []string{"call-d@test"}},
		{"?call_id=call-c@test", 200, []string{"call-c@test"}},
		{"?number=abc", 400, nil},
		{"?from=yesterday", 400, nil},
		{"?decision=maybe", 400, nil},
		{"?limit=0", 400, nil},
	} {
		code, body := f.do(t, "GET", "/api/v1/records"+tc.query, "")
		if code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.query, code, body, tc.code)
			continue
		}
		if code != 200 {
			if !strings.Contains(body, `"error"`) {
				t.Errorf("%s: error body %s", tc.query, body)
			}
			continue
		}
		var out struct{ Records []Record }
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range out.Records {
			ids = append(ids, r.CallID)
			if want := map[bool]string{true: "forwarded", false: "rejected"}[r.Stage == "downstream"]; r.Decision != want {
				t.Errorf("%s: decision %q for stage %q", r.CallID, r.Decision, r.Stage)
			}
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: %v, want %v", tc.query, ids, tc.want)
		}
	}

	code, body := f.do(t, "GET", "/api/v1/records/explain?call_id=call-b@test", "")
	var ex struct {
		Record Record
		Steps  []Step
		Hits   []Hit
	}
	if err := json.Unmarshal([]byte(body), &ex); code != 200 || err != nil {
		t.Fatalf("explain: %d %s", code, body)
	}
	if len(ex.Hits) != 1 || ex.Hits[0] != (Hit{Rule: "dnc-api", Mode: "enforce", Action: "reject", Matched: "callee", Entry: "12025550142"}) {
		t.Errorf("hits %+v", ex.Hits)
	}
	last := ex.Steps[len(ex.Steps)-1]
	if last.Stage != "policy" || last.Decision != "reject" || !strings.Contains(last.Detail, "603") || !strings.Contains(last.Detail, "dnc-api") {
		t.Errorf("last step %+v", last)
	}
	if code, _ := f.do(t, "GET", "/api/v1/records/explain?call_id=nope", ""); code != 404 {
		t.Errorf("explain of an unknown call: %d", code)
	}

	code, body = f.do(t, "GET", "/api/v1/records/export?format=csv&number=12025550142", "")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || err != nil || len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") || rows[1][1] != "call-d@test" {
		t.Errorf("csv export: %d %v %q", code, err, body)
	}
	code, body = f.do(t, "GET", "/api/v1/records/export?format=jsonl", "")
	if lines := strings.Split(strings.TrimSpace(body), "\n"); code != 200 || len(lines) != 3 || !strings.Contains(lines[2], `"call_id":"call-b@test"`) {
		t.Errorf("jsonl export: %d %q", code, body)
	}
}

// TestAPIListsComplaintsAudit: a managed list entry added through the API
// is in force once the lists are re-read, removal undoes it, complaints
// feed reputation, and every change is in the audit trail with its actor.
func TestAPIListsComplaintsAudit(t *testing.T) {
	f := newFixture(t)
	invite := "INVITE sip:+12025550142@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\nFrom: <sip:+14155550100@127.0.0.1>;tag=1\nTo: <sip:+12025550142@127.0.0.1>\nCall-ID: x@test\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n"
	explain := func() string {
		body, _ := json.Marshal(map[string]string{"realm": "inside", "invite": invite})
		code, out := f.do(t, "POST", "/api/v1/explain", string(body))
		if code != 200 {
			t.Fatalf("explain: %d %s", code, out)
		}
		return out
	}
	if out := explain(); !strings.Contains(out, `"decision":"forwarded"`) {
		t.Fatalf("before the list entry: %s", out)
	}
	if code, body := f.do(t, "PUT", "/api/v1/lists/dnc-api/+1 (202) 555-0142", `{"note":"asked not to be called","expires":"2027-01-01T00:00:00Z"}`); code != 200 || !strings.Contains(body, `"number":"12025550142"`) {
		t.Fatalf("put: %d %s", code, body)
	}
	if code, _ := f.do(t, "PUT", "/api/v1/lists/not-managed/12025550142", ""); code != 404 {
		t.Errorf("put to an undeclared list: %d, want 404", code)
	}
	if code, _ := f.do(t, "PUT", "/api/v1/lists/dnc-api/12025550142", `{"expires":"2020-01-01T00:00:00Z"}`); code != 400 {
		t.Errorf("put expiring in the past: %d, want 400", code)
	}
	// What serve's poller does: read the database into the lists in force.
	entries, _ := f.st.Entries(context.Background(), "", "", t0)
	var me []policy.ManagedEntry
	for _, e := range entries {
		me = append(me, policy.ManagedEntry{List: e.List, Number: e.Number, Expires: e.Expires})
	}
	if err := f.managed.Set(me); err != nil {
		t.Fatal(err)
	}
	if out := explain(); !strings.Contains(out, `"decision":"rejected"`) || !strings.Contains(out, `"code":603`) {
		t.Fatalf("after the list entry: %s", out)
	}
	if code, body := f.do(t, "GET", "/api/v1/lists/dnc-api/12025550142", ""); code != 200 || !strings.Contains(body, "asked not to be called") {
		t.Errorf("check: %d %s", code, body)
	}
	if code, body := f.do(t, "GET", "/api/v1/lists", ""); code != 200 || !strings.Contains(body, `{"name":"dnc-api","entries":1}`) {
		t.Errorf("lists: %d %s", code, body)
	}
	if code, _ := f.do(t, "DELETE", "/api/v1/lists/dnc-api/12025550142", ""); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code, _ := f.do(t, "DELETE", "/api/v1/lists/dnc-api/12025550142", ""); code != 404 {
		t.Errorf("second delete: %d, want 404", code)
	}

	for i, want := range []string{`"complaints":1`, `"complaints":2`} {
		code, body := f.do(t, "POST", "/api/v1/complaints", `{"number":"+12025550199","category":"fraud","reporter":"subscriber 17","note":"fake bank"}`)
		if code != 202 || !strings.Contains(body, want) {
			t.Fatalf("complaint %d: %d %s", i, code, body)
		}
	}
	if code, _ := f.do(t, "POST", "/api/v1/complaints", `{"number":"+12025550199","category":"annoying"}`); code != 400 {
		t.Errorf("complaint outside the taxonomy: %d, want 400", code)
	}
	if code, body := f.do(t, "GET", "/api/v1/numbers/12025550199", ""); code != 200 || !strings.Contains(body, `"complaints":2`) || !strings.Contains(body, `"one_ring":false`) {
		t.Errorf("number: %d %s", code, body)
	}
	if code, _ := f.do(t, "DELETE", "/api/v1/numbers/12025550199/flags/one_ring", ""); code != 204 {
		t.Errorf("clear flag: %d", code)
	}

	code, body := f.do(t, "GET", "/api/v1/audit", "")
	var audit struct {
		Changes []struct{ Actor, Action, Target, Detail string }
	}
	if err := json.Unmarshal([]byte(body), &audit); code != 200 || err != nil {
		t.Fatalf("audit: %d %s", code, body)
	}
	var got []string
	for _, c := range audit.Changes {
		if c.Actor != "alice" {
			t.Errorf("audit line by %q, want alice: %+v", c.Actor, c)
		}
		got = append(got, c.Action+" "+c.Target)
	}
	want := "flag.clear 12025550199,complaint 12025550199,complaint 12025550199,list.remove dnc-api/12025550142,list.add dnc-api/12025550142"
	if strings.Join(got, ",") != want {
		t.Errorf("audit trail:\n got %s\nwant %s", strings.Join(got, ","), want)
	}
}

// TestAPIRuleHits: the calls each rule decided, per minute over the last
// hour.
func TestAPIRuleHits(t *testing.T) {
	f := newFixture(t)
	var recs []records.Record
	for i := range 5 {
		r := sampleRecord(i, "12025550142", 603, "policy", "dnc-api")
		r.At = t0.Add(30*time.Minute + time.Duration(i)*time.Second)
		recs = append(recs, r)
	}
	if err := f.st.Write(context.Background(), recs, nil); err != nil {
		t.Fatal(err)
	}
	code, body := f.do(t, "GET", "/api/v1/rules/hits?window=1h", "")
	if code != 200 || !strings.Contains(body, `"bucket_seconds":60`) || !strings.Contains(body, `{"rule":"dnc-api","points":[{"t":"2026-12-07T10:32:00Z","calls":5}]}`) {
		t.Errorf("rule hits: %d %s", code, body)
	}
	if code, _ := f.do(t, "GET", "/api/v1/rules/hits?window=7d", ""); code != 400 {
		t.Errorf("window 7d: %d, want 400", code)
	}
}
