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
