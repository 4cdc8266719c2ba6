package configs

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestExplicitZeroIsNotReplacedByADefault: a key written with 0 (or "")
// that the section would fill with its default is an error at its line,
// never a silent default. Zeros that are values (memory_limit_mb: 0 is
// "no limit", origid: "" is "a new one per call") stay fine.
func TestExplicitZeroIsNotReplacedByADefault(t *testing.T) {
	base, err := os.ReadFile("stirgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to string
		want           string // "key: message"; "" for no error
	}{
		{"drain_timeout 0s", "drain_timeout: 30s", "drain_timeout: 0s", "shutdown.drain_timeout: 0s would be replaced by the default 30s"},
		{"max_skew 0", "max_skew: 10s", "max_skew: 0", "verify.max_skew: 0s would be replaced by the default 10s"},
		{"cert_max_age 0s", "cert_max_age: 1h", "cert_max_age: 0s", "attest.cert_max_age: 0s would be replaced by the default 1h0m0s"},
		{"empty log level", "level: info", `level: ""`, `log.level: "" would be replaced by the default info`},
		{"memory limit 0 is a value", "memory_limit_mb: 0", "memory_limit_mb: 0", ""},
		{"the example as it is", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := string(base)
			line := 0
			if tt.from != "" {
				if !strings.Contains(text, tt.from) {
					t.Fatalf("stirgate.yaml has no %q", tt.from)
				}
				line = strings.Count(text[:strings.Index(text, tt.from)], "\n") + 1
				text = strings.Replace(text, tt.from, tt.to, 1)
			}
			var c Config
			err := Decode("stirgate.yaml", []byte(text), &c)
			want := fmt.Sprintf("stirgate.yaml:%d: %s", line, tt.want)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("error %v, want a line %q", err, want)
			}
		})
	}
}
