package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/policy/store/redistest"
)

// stateConfig is the embedded default configuration with the state section
// decoded from stateYAML as if from <dir>/stirgate.yaml, so relative paths
// resolve against dir.
func stateConfig(t *testing.T, dir, stateYAML string) *configs.Config {
	t.Helper()
	cfg, err := configs.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.File = filepath.Join(dir, "stirgate.yaml")
	cfg.State = store.Config{}
	if err := configs.Decode(cfg.File, []byte(stateYAML), &cfg.State); err != nil {
		t.Fatalf("state section:\n%s\n%v", stateYAML, err)
	}
	return cfg
}

// addOnce opens the state cfg names and records one event: what a call
// through a rate rule does first.
func addOnce(cfg *configs.Config, key string) (int, error) {
	st, _, err := openState(cfg, prometheus.NewRegistry(), slog.Default())
	if err != nil {
		return 0, err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return st.Counter().Add(ctx, key, 1, time.Minute, time.Now())
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
}

// keysOf lists a server's keys (as its admin).
func keysOf(s *redistest.Server) []string {
	out := s.Do("--scan")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

func TestStateRedisACL(t *testing.T) {
	const secret = "Sup3r-s3cret-ACL-pw"
	srv := redistest.StartOptions(t, redistest.Options{ACL: []string{"user stirgate on >" + secret + " ~stirgate:* +@all"}})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pw"), secret+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "wrong-pw"), "Not-the-password-42\n", 0o600)
	writeFile(t, filepath.Join(dir, "open-pw"), secret+"\n", 0o644)
	redis := func(extra string) string {
		return "backend: redis\nredis:\n  addrs: [" + srv.Addr + "]\n  timeout: 1s\n" + extra // generous: ACLs are tested, not latency
	}

	t.Run("user and password file", func(t *testing.T) {
		n, err := addOnce(stateConfig(t, dir, redis("  username: stirgate\n  password_file: pw\n")), "acl-caller")
		if err != nil || n != 1 {
			t.Fatalf("Counter.Add as the ACL user: %d, %v; want 1", n, err)
		}
		keys := keysOf(srv)
		if len(keys) == 0 {
			t.Fatal("no key in Redis after Counter.Add")
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, store.DefaultKeyPrefix) || !strings.Contains(k, "acl-caller") {
				t.Errorf("key %q: want it under %q, naming the caller", k, store.DefaultKeyPrefix)
			}
		}
	})

	for _, tc := range []struct {
		name, extra string
		want        []string // in the error
		never       []string // never in the error
	}{
		{"no AUTH", "", []string{"NOAUTH"}, nil},
		{"wrong password", "  username: stirgate\n  password_file: wrong-pw\n", []string{"WRONGPASS"}, []string{"Not-the-password-42", secret}},
		{"password file readable by others", "  username: stirgate\n  password_file: open-pw\n",
			[]string{"state.redis.password_file", filepath.Join(dir, "open-pw"), "0644"}, []string{secret}},
		{"key prefix outside the ACL's key pattern", "  username: stirgate\n  password_file: pw\n  key_prefix: 'other:'\n", []string{"NOPERM"}, []string{secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := addOnce(stateConfig(t, dir, redis(tc.extra)), "acl-caller")
			if err == nil {
				t.Fatal("store op succeeded, want it refused")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error %q contains the secret %q", err, n)
				}
			}
		})
	}
	for _, k := range keysOf(srv) {
		if strings.HasPrefix(k, "other:") {
			t.Errorf("key %q written outside the ACL's pattern", k)
		}
	}
}

func TestStateRedisTLS(t *testing.T) {
	pki := redistest.NewTLSFiles(t)
	optional := redistest.StartOptions(t, redistest.Options{TLS: pki, AuthClients: "optional"})
	required := redistest.StartOptions(t, redistest.Options{TLS: pki, AuthClients: "yes"})
	dir := t.TempDir()
	// A generous timeout: what is tested is TLS, and the default 20 ms
	// per operation was exceeded once under -race in a loaded CI run.
	conf := func(addr, tlsYAML string) string {
		return "backend: redis\nredis:\n  addrs: [" + addr + "]\n  timeout: 1s\n  tls:\n    enabled: true\n" + tlsYAML
	}
	ca := "    ca_file: " + pki.CA + "\n"
	client := "    cert_file: " + pki.ClientCert + "\n    key_file: " + pki.ClientKey + "\n"
	for _, tc := range []struct {
		name    string
		srv     *redistest.Server
		tlsYAML string
		wantErr []string // one of them in the error; nil = the op succeeds
	}{
		{"CA and client certificate", optional, ca + client, nil},
		{"CA, no client certificate, optional", optional, ca, nil},
		{"CA and server_name", optional, ca + "    server_name: localhost\n", nil},
		{"client certificate required and given", required, ca + client, nil},
		{"system roots only", optional, client, []string{"x509: certificate signed by unknown authority"}},
		{"server_name not in the certificate", optional, ca + "    server_name: redis.example\n", []string{"x509: certificate is valid for"}},
		// Under TLS 1.3 the server checks the client after the handshake:
		// the client sees its alert or, when its HELLO is already on the
		// way, the reset of the connection.
		{"client certificate required, none", required, ca, []string{"certificate required", "connection reset by peer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := addOnce(stateConfig(t, dir, conf(tc.srv.Addr, tc.tlsYAML)), "tls-caller")
			if tc.wantErr == nil {
				if err != nil || n < 1 {
					t.Fatalf("Counter.Add over TLS: %d, %v", n, err)
				}
				return
			}
			if err == nil {
				t.Fatal("store op succeeded, want a TLS error")
			}
			for _, w := range tc.wantErr {
				if strings.Contains(err.Error(), w) {
					return
				}
			}
			t.Fatalf("error %q, want one containing one of %q", err, tc.wantErr)
		})
	}
	if got := optional.Do("hlen", "stirgate:c:{tls-caller}"); got == "" || got == "0" {
		t.Errorf("counter hash on the TLS server: HLEN %q, want fields", got)
	}
}

func TestStateRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "mymaster")
	dir := t.TempDir()
	cfg := stateConfig(t, dir, "backend: redis\nredis:\n  mode: sentinel\n  master_name: mymaster\n  timeout: 1s\n  addrs: ["+sentinel.Addr+"]\n")
	n, err := addOnce(cfg, "sentinel-caller")
	if err != nil || n != 1 {
		t.Fatalf("Counter.Add through the sentinel: %d, %v; want 1", n, err)
	}
	keys := keysOf(master)
	if len(keys) != 1 || !strings.Contains(keys[0], "sentinel-caller") {
		t.Fatalf("master keys %q, want the caller's counter", keys)
	}

	t.Run("unknown master name", func(t *testing.T) {
		cfg := stateConfig(t, dir, "backend: redis\nredis:\n  mode: sentinel\n  master_name: other\n  dial_timeout: 500ms\n  addrs: ["+sentinel.Addr+"]\n")
		if _, err := addOnce(cfg, "sentinel-caller"); err == nil {
			t.Fatal("opened a master the sentinel does not know")
		}
	})
}

// A master with an ACL behind a sentinel without one: the user and password
// go to the master only.
func TestStateRedisSentinelACLMaster(t *testing.T) {
	const secret = "Sentinel-master-pw-7"
	master := redistest.StartOptions(t, redistest.Options{ACL: []string{"user stirgate on >" + secret + " ~stirgate:* +@all"}})
	sentinel := redistest.StartSentinel(t, master, "mymaster")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pw"), secret, 0o600)
	cfg := stateConfig(t, dir, "backend: redis\nredis:\n  mode: sentinel\n  master_name: mymaster\n  timeout: 1s\n  addrs: ["+sentinel.Addr+"]\n  username: stirgate\n  password_file: pw\n")
	if n, err := addOnce(cfg, "sentinel-acl-caller"); err != nil || n != 1 {
		t.Fatalf("Counter.Add through the sentinel as the ACL user: %d, %v; want 1", n, err)
	}
	if keys := keysOf(master); len(keys) != 1 || !strings.Contains(keys[0], "sentinel-acl-caller") {
		t.Fatalf("master keys %q, want the caller's counter", keys)
	}
}
