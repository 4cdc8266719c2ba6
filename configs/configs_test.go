package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultConfigLoads(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if c.SIP.Realms.Inside.Listen[0].Addr != "127.0.0.1:5070" || c.Admin.Listen != "127.0.0.1:9060" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	// The file on disk is the embedded one.
	if _, err := Load("stirgate.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeErrorsNameFileLineKey(t *testing.T) {
	base, err := os.ReadFile("stirgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		onLine string // text of the line the error must point at
		msg    string // "key: message" expected after "file:line: "
	}
	tests := []struct {
		name string
		edit func(string) string
		want []want
	}{
		{
			"unknown key",
			func(s string) string { return strings.Replace(s, "  format: text", "  format: text\n  colour: red", 1) },
			[]want{{"colour: red", `log.colour: unknown key "colour"`}},
		},
		{
			"wrong type",
			func(s string) string {
				return strings.Replace(s, "max_message_size: 16384", "max_message_size: big", 1)
			},
			[]want{{"max_message_size: big", "sip.max_message_size: cannot unmarshal"}},
		},
		{
			"validation error points at the key",
			func(s string) string {
				return strings.Replace(s, `{transport: tcp, addr: "127.0.0.1:5080"}`, `{transport: sctp, addr: "127.0.0.1:5080"}`, 1)
			},
			[]want{{"transport: sctp", `sip.realms.outside.listen[1].transport: "sctp" is not one of udp, tcp`}},
		},
		{
			"runtime and admin",
			func(s string) string {
				s = strings.Replace(s, "gc_percent: 200", "gc_percent: 5", 1)
				return strings.Replace(s, "pprof: false", "pprof: true", 1)
			},
			[]want{{"gc_percent: 5", "runtime.gc_percent: 5 out of range 25..2000"}, {"pprof: true", "admin.pprof: needs admin.token_file"}},
		},
		{
			"several problems at once",
			func(s string) string {
				s = strings.Replace(s, "level: info", "level: loud", 1)
				return strings.Replace(s, `trusted: ["127.0.0.0/8", "::1/128"]`, `trusted: ["127.0.0.0/8", "nope"]`, 1)
			},
			[]want{{"level: loud", "log.level:"}, {`"nope"`, "sip.realms.inside.trusted[1]:"}},
		},
		{
			"unknown key and bad value reported together",
			func(s string) string {
				s = strings.Replace(s, "  format: text", "  format: text\n  colour: red", 1)
				return strings.Replace(s, "max_message_size: 16384", "max_message_size: big", 1)
			},
			[]want{{"colour: red", `log.colour: unknown key "colour"`}, {"max_message_size: big", "sip.max_message_size: cannot unmarshal"}},
		},
		{
			"syntax error",
			func(s string) string { return strings.Replace(s, "log:", "log: [", 1) },
			[]want{{"log: [", "syntax error:"}},
		},
		{
			"flow mapping not closed",
			func(s string) string {
				return strings.Replace(s, `{transport: udp, addr: "127.0.0.1:5070"}`, `{transport: udp, addr: "127.0.0.1:5070"`, 1)
			},
			[]want{{`{transport: udp, addr: "127.0.0.1:5070"`, "syntax error:"}},
		},
		{
			"tab indentation",
			func(s string) string { return strings.Replace(s, "  level: info", "\tlevel: info", 1) },
			[]want{{"\tlevel: info", "syntax error:"}},
		},
		{
			"bad nesting",
			func(s string) string { return strings.Replace(s, "  format: text", "  format: text: json", 1) },
			[]want{{"format: text: json", "syntax error:"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.edit(string(base))
			var c Config
			err := Decode("bad.yaml", []byte(text), &c)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				line := 0
				for i, l := range strings.Split(text, "\n") {
					if strings.Contains(l, w.onLine) {
						line = i + 1
						break
					}
				}
				exp := fmt.Sprintf("bad.yaml:%d: %s", line, w.msg)
				if line == 0 || !strings.Contains(err.Error(), exp) {
					t.Errorf("error\n%v\nshould contain %q", err, exp)
				}
			}
		})
	}
}

func TestResolveRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stirgate.yaml")
	data, _ := os.ReadFile("stirgate.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Resolve("policy.yaml"); got != filepath.Join(dir, "policy.yaml") {
		t.Errorf("Resolve(relative) = %s", got)
	}
	if got := c.Resolve("/etc/x.yaml"); got != "/etc/x.yaml" {
		t.Errorf("Resolve(absolute) = %s", got)
	}
}
