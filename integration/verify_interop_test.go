package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStirgateVerifiesSecsipidxHeader: PASSporTs signed by Debian's
// secsipidx with our test PKI's key pass `stirgate verify`, fetching the
// certificate from the info URL; a tampered one fails with 438.
func TestStirgateVerifiesSecsipidxHeader(t *testing.T) {
	requireSecsipidx(t)
	pki := testPKI(t, "http://127.0.0.1/")
	cs := startCertServer(t, pki)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimSuffix(cs.Base, "/certs/"), "http://"))
	verifyCLI := func(id string) (int, map[string]any) {
		code, out := runTool(t, 20*time.Second, stirgateBinary(t), "verify", "--identity", id,
			"--orig", "12025550199", "--dest", "12025550100", "--trust", filepath.Join(pki, "root.pem"),
			"--allow-http", "--allow-address", "127.0.0.0/8", "--allow-port", port)
		var v map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &v); err != nil {
			t.Fatalf("stirgate verify printed %q: %v", out, err)
		}
		return code, v
	}
	for _, level := range []string{"A", "B", "C"} {
		id := secsipidxSign(t, filepath.Join(pki, "sp.key"), cs.URL("sp.pem"), level, "12025550199", "12025550100")
		code, v := verifyCLI(id)
		if code != 0 || v["passed"] != true || v["attest"] != level || v["x5u"] != cs.URL("sp.pem") {
			t.Fatalf("secsipidx header attest %s: exit %d, verdict %v", level, code, v)
		}
	}
	code, v := verifyCLI(tamper(secsipidxSign(t, filepath.Join(pki, "sp.key"), cs.URL("sp.pem"), "A", "12025550199", "12025550100")))
	if code == 0 || v["sip_code"] != float64(438) {
		t.Fatalf("tampered secsipidx header: exit %d, verdict %v", code, v)
	}
}

// TestTwoStirgatesSignThenVerify: a call signed by one stirgate's inside
// realm crosses a second stirgate's outside realm, which verifies it; the
// PBX behind the second sees verstat=TN-Validation-Passed.
//
//	SIPp UAC -> A.inside -(sign)-> A.outside -> B.outside -(verify)-> B.inside -> SIPp UAS
func TestTwoStirgatesSignThenVerify(t *testing.T) {
	requireSipp(t)
	const calls = 20
	a, b := newProxyConfig(t), newProxyConfig(t)
	a.TrunkPort = b.OutsidePort // A's trunk is B
	base := fmt.Sprintf("http://%s/certs/", hostPort(a.AdminPort))
	pki := testPKI(t, base)
	a.Extra = attestYAML(pki, base+"sp.pem")
	b.Extra = verifyYAML(filepath.Join(pki, "root.pem"), []int{a.AdminPort})
	startProxy(t, a)
	pb := startProxy(t, b)

	uas := startSipp(t, sippRun{Name: "uas", Scenario: "uas.xml", Port: b.PBXPort, Calls: calls, Timeout: 60 * time.Second})
	uac := runSipp(t, sippRun{Name: "uac", Scenario: "uac.xml", Remote: a.InsideAddr(), Calls: calls, Rate: 20, Timeout: 60 * time.Second})
	uac.require(t, calls)
	res := uas.Wait(t)
	res.require(t, calls)
	msgs, err := os.ReadFile(filepath.Join(res.Dir, "messages.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(msgs), "verstat=TN-Validation-Passed"); n < calls {
		t.Fatalf("the PBX saw verstat=TN-Validation-Passed %d times in %d calls", n, calls)
	}
	passed := 0
	for _, l := range pb.callLogLines() {
		if strings.Contains(l, "attest=A") && strings.Contains(l, "verstat=TN-Validation-Passed") {
			passed++
		}
	}
	if passed != calls {
		t.Fatalf("B recorded %d verified A-attested calls, want %d", passed, calls)
	}
}
