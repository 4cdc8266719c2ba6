package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/sip"
)

// TestWatchedFilesIncludePrompts: the prompt files a policy names are
// watched, also while the policy is refused for one of them (a stereo
// WAV): fixing the prompt reloads.
func TestWatchedFilesIncludePrompts(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	const file = `lists:
  - {name: dnc, numbers: ["+12025550100"]}
rules:
  - {name: dnc, type: list, lists: [dnc], action: {type: reject, announce: {prompt: prompts/dnc.wav}}}
announce:
  outside: {prompt: /srv/prompts/blocked.wav}
`
	if err := os.WriteFile(pol, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	// prompts/dnc.wav is missing: the policy is refused, its prompts watched.
	cfg, err := configs.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Policy.Files = []string{pol}
	got := watchedFiles("", cfg)
	for _, want := range []string{pol, filepath.Join(dir, "prompts/dnc.wav"), "/srv/prompts/blocked.wav"} {
		if !slices.Contains(got, want) {
			t.Errorf("watched %q, want %s among them", got, want)
		}
	}
}

// TestWatchedFilesIncludeTLS: the TLS files of the realms are watched
// (relative to the config file), so a renewed certificate reloads.
func TestWatchedFilesIncludeTLS(t *testing.T) {
	cfg, err := configs.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.File = "/etc/stirgate/stirgate.yaml"
	cfg.SIP.Realms.Inside.Listen = append(cfg.SIP.Realms.Inside.Listen, sip.ListenConfig{Transport: "tls", Cert: "tls/s.pem", Key: "tls/s.key", ClientCA: "/etc/pbx-ca.pem"})
	cfg.SIP.Realms.Outside.TLS = sip.TLSClientConfig{CA: "tls/carrier.pem", Cert: "tls/c.pem", Key: "tls/c.key"}
	got := watchedFiles("", cfg)
	for _, want := range []string{"/etc/stirgate/tls/s.pem", "/etc/stirgate/tls/s.key", "/etc/pbx-ca.pem", "/etc/stirgate/tls/carrier.pem", "/etc/stirgate/tls/c.pem", "/etc/stirgate/tls/c.key"} {
		if !slices.Contains(got, want) {
			t.Errorf("watched %q, want %s among them", got, want)
		}
	}
}
