package redistest

import (
	"strings"
	"testing"
)

func TestStartAndCluster(t *testing.T) {
	s := Start(t)
	if got := s.Do("set", "k", "v"); got != "OK" {
		t.Fatalf("SET: %q", got)
	}
	s.Restart()
	if got := s.Do("get", "k"); got != "" {
		t.Fatalf("after restart GET: %q, want empty", got)
	}
	nodes := StartCluster(t, 3)
	if info := nodes[0].Do("cluster", "info"); !strings.Contains(info, "cluster_known_nodes:3") {
		t.Fatalf("cluster info:\n%s", info)
	}
}

func TestStartACLTLSSentinel(t *testing.T) {
	s := StartOptions(t, Options{ACL: []string{"user app on >app-pw ~app:* +@all"}, TLS: NewTLSFiles(t), AuthClients: "yes"})
	if got := s.Do("set", "k", "v"); got != "OK" {
		t.Fatalf("SET as admin over TLS: %q", got)
	}
	if got := s.Do("acl", "whoami"); got != AdminUser {
		t.Fatalf("ACL WHOAMI: %q", got)
	}
	m := StartOptions(t, Options{ACL: []string{"user app on >app-pw ~app:* +@all"}})
	sen := StartSentinel(t, m, "mymaster")
	if got := sen.Do("sentinel", "master", "mymaster"); !strings.Contains(got, "flags\nmaster\n") {
		t.Fatalf("SENTINEL MASTER:\n%s", got)
	}
}
