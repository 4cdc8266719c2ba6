package main

import (
	"os"
	"testing"
)

// TestUnexpectedArgumentsAreRefused: an operator who forgets --config (or
// mistypes a flag value) gets the usage line and exit 2, never a run on
// the embedded defaults.
func TestUnexpectedArgumentsAreRefused(t *testing.T) {
	t.Chdir(t.TempDir()) // serve on the defaults would create ./dev-pki here
	for _, args := range [][]string{
		{"serve", "/etc/stirgate.yaml"},
		{"serve", "--config", "../../configs/stirgate.yaml", "extra"},
		{"certs", "init", "--dir", "pki", "extra"},
		{"sign", "--key", "k", "--x5u", "https://x/sp.pem", "--attest", "A", "--orig", "1", "--dest", "2", "extra"},
		{"verify", "--identity", "x", "--orig", "1", "--dest", "2", "--trust", "root.pem", "extra"},
		{"explain", "a.sip", "b.sip"},
		{"explain"},
		{"explain", "--realm", "outsde", "invite.sip"},
		{"config", "check"},
		{"policy", "check"},
		{"policy"},
		{"serve", "--no-such-flag"},
	} {
		if rc := run(args); rc != 2 {
			t.Errorf("stirgate %q: exit %d, want 2", args, rc)
		}
	}
	if _, err := os.Stat("dev-pki"); !os.IsNotExist(err) {
		t.Errorf("a refused command line created ./dev-pki (stat: %v)", err)
	}
}
