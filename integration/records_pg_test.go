package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/policy/records/pgtest"
)

// TestManagedListAcrossNodes: two stirgate nodes share one PostgreSQL
// record database (a real server, started for the test). A number put on
// a managed Do-Not-Call list through node A's admin API is rejected by
// node B, and the call records of both nodes answer one traceback question
// from either node.
func TestManagedListAcrossNodes(t *testing.T) {
	requireSipp(t)
	pg := pgtest.Start(t, "fsync=off")
	dsn := pg.NewDatabase(t)
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	pol := "lists:\n  - name: company_dnc\n    managed: true\nrules:\n  - name: company-dnc\n    type: list\n    match: {realm: inside}\n    lists: [company_dnc]\n    action: {type: reject, code: 603}\n"
	if err := os.WriteFile(polFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	token, tokenFile := adminToken(t)
	node := func() (proxyConfig, *proxy) {
		cfg := newProxyConfig(t)
		cfg.DrainTimeout = 5 * time.Second
		cfg.TokenFile = tokenFile
		cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\nrecords:\n  backend: postgres\n  dsn: %q\n", polFile, dsn)
		return cfg, startProxy(t, cfg)
	}
	cfgA, pA := node()
	cfgB, _ := node()
	const callee = "+15559870002"

	// Before: node B forwards the call to its trunk.
	uas := startSipp(t, sippRun{Name: "trunk-b", Scenario: "uas.xml", Port: cfgB.TrunkPort, Calls: 1, Timeout: 30 * time.Second})
	runSipp(t, sippRun{Name: "pbx-b-before", Scenario: "uac.xml", Remote: cfgB.InsideAddr(), Service: callee, Calls: 1, Timeout: 30 * time.Second}).require(t, 1)
	uas.Wait(t).require(t, 1)

	// The number goes on the list through node A.
	req, _ := http.NewRequest(http.MethodPut, cfgA.AdminURL()+"/api/v1/lists/company_dnc/"+callee, strings.NewReader(`{"note":"asked by phone"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Actor", "alice")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT on node A: %s", resp.Status)
	}
	added := time.Now()

	// Node B rejects it once it has re-read the lists (every 500 ms).
	waitDryRun603(t, cfgB, token, callee)
	t.Logf("node B rejects the number %s after node A's PUT", time.Since(added).Round(time.Millisecond))
	runSipp(t, sippRun{Name: "pbx-b-after", Scenario: "uac_603.xml", Remote: cfgB.InsideAddr(), Service: callee, Calls: 1, Timeout: 30 * time.Second}).require(t, 1)

	// One traceback answer for both calls, asked of node A's database.
	var recs []traceRecord
	for i := 0; i < 50 && len(recs) < 2; i++ {
		out, _ := runTrace(t, "--config", pA.cmd.Args[len(pA.cmd.Args)-1], "--dest", callee, "--json")
		recs = parseTraceJSON(t, out)
		if len(recs) < 2 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(recs) != 2 || recs[0].Status != 603 || recs[0].Stage != "policy" || recs[1].Status != 200 {
		t.Fatalf("trace on node A of node B's calls: %+v", recs)
	}
}
