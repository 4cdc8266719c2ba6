package configs

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/store"
)

// TestPolicyOnStoreErrorFileErrors: a misplaced or misspelt on_store_error
// is reported as file:line: key, like every other policy file error.
func TestPolicyOnStoreErrorFileErrors(t *testing.T) {
	const file = `lists:
  - name: spam
    numbers: ["+1 900*"]
rules:
  - name: block
    type: list
    lists: [spam]
    on_store_error: closed
    action: {type: reject}
  - name: flood
    type: rate
    key: source
    limit: 10
    window: 10s
    on_store_error: shut
    action: {type: reject}
`
	var f policy.File
	err := Decode("policy.yaml", []byte(file), &f)
	for _, want := range []string{
		"policy.yaml:8: rules[0].on_store_error: list rules keep no state",
		`policy.yaml:15: rules[1].on_store_error: "shut" is not one of open, closed`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want a line %q", err, want)
		}
	}
	ok := strings.Replace(strings.Replace(file, "    on_store_error: closed\n", "", 1), "shut", "closed", 1)
	if err := Decode("policy.yaml", []byte(ok), &f); err != nil {
		t.Fatalf("valid file: %v", err)
	}
	if f.Rules[1].OnStoreError != "closed" {
		t.Fatalf("on_store_error = %q", f.Rules[1].OnStoreError)
	}
}

// TestExamplePolicyFile: policy.yaml, the documentation of record for the
// policy rules, is valid and compiles with its lists.
func TestExamplePolicyFile(t *testing.T) {
	var f policy.File
	if err := LoadFile("policy.yaml", &f); err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile([]policy.File{f}, policy.FileLoader(func(p string) string { return filepath.Join(".", p) }, time.Time{}), store.NewMemory(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !e.HasRules(policy.PhaseEarly) || !e.HasRules(policy.PhaseVerified) {
		t.Fatal("the example has rules for both stages")
	}
}

// writeWAV writes a WAV file of n samples of silence: PCM (format 1) or
// another format tag, at rate Hz with channels and bits per sample.
func writeWAV(t *testing.T, path string, tag, channels uint16, rate uint32, bits uint16, n int) {
	t.Helper()
	le := binary.LittleEndian
	blockAlign := channels * bits / 8
	data := make([]byte, n*int(blockAlign))
	fmtc := le.AppendUint16(nil, tag)
	fmtc = le.AppendUint16(fmtc, channels)
	fmtc = le.AppendUint32(fmtc, rate)
	fmtc = le.AppendUint32(fmtc, rate*uint32(blockAlign))
	fmtc = le.AppendUint16(fmtc, blockAlign)
	fmtc = le.AppendUint16(fmtc, bits)
	var b []byte
	b = append(b, "RIFF"...)
	b = le.AppendUint32(b, uint32(4+8+len(fmtc)+8+len(data)))
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, uint32(len(fmtc)))
	b = append(b, fmtc...)
	b = append(b, "data"...)
	b = le.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyAnnounceErrors: an announcement whose prompt is missing, stereo
// or 44.1 kHz, or whose sit is unknown, is refused at the line that names
// it; prompts are relative to the policy file.
func TestPolicyAnnounceErrors(t *testing.T) {
	dir := t.TempDir()
	writeWAV(t, filepath.Join(dir, "ok.wav"), 1, 1, 8000, 16, 8000)
	writeWAV(t, filepath.Join(dir, "stereo.wav"), 1, 2, 8000, 16, 8000)
	writeWAV(t, filepath.Join(dir, "cd.wav"), 1, 1, 44100, 16, 44100)
	const file = `rules:
  - name: a
    type: dnc
    lists: [dnc]
    action: {type: reject, announce: {prompt: missing.wav}}
  - name: b
    type: dnc
    lists: [dnc]
    action: {type: reject, announce: {prompt: stereo.wav}}
  - name: c
    type: dnc
    lists: [dnc]
    action: {type: reject, announce: {prompt: cd.wav}}
  - name: d
    type: dnc
    lists: [dnc]
    action: {type: reject, announce: {prompt: ok.wav, sit: busy}}
  - name: e
    type: dnc
    lists: [dnc]
    action: {type: reject, announce: {prompt: ok.wav, repeat: 11}}
  - name: f
    type: list
    lists: [dnc]
    action: {type: tag, header: X-A, value: b, announce: {prompt: ok.wav}}
lists:
  - name: dnc
    numbers: ["+12025550100"]
announce:
  inside: {prompt: ok.wav, sit: reorder}
  elsewhere: {prompt: ok.wav}
`
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	var f policy.File
	err := LoadFile(path, &f)
	for _, want := range []string{
		path + ":5: rules[0].action.announce.prompt: open " + filepath.Join(dir, "missing.wav") + ": no such file or directory",
		path + ":9: rules[1].action.announce.prompt: " + filepath.Join(dir, "stereo.wav") + ": 8000 Hz stereo 16-bit PCM; want 8000 Hz mono",
		path + ":13: rules[2].action.announce.prompt: " + filepath.Join(dir, "cd.wav") + ": 44100 Hz mono 16-bit PCM; want 8000 Hz",
		path + `:17: rules[3].action.announce.sit: "busy" is not one of intercept, vacant, reorder, no_circuit, none`,
		path + ":21: rules[4].action.announce.repeat: media: repeat 11 out of range 1..10",
		path + ":25: rules[5].action.announce: only a reject action plays an announcement",
		path + ":31: announce.elsewhere: not a realm (inside, outside)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant a line %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "announce.inside") {
		t.Errorf("the valid realm announcement is reported: %v", err)
	}
}

// TestPolicyAnnouncements: a rule's announcement wins over its realm's; a
// rule with {sit: none} plays nothing; a rule without one plays its realm's,
// and a realm without one plays nothing.
func TestPolicyAnnouncements(t *testing.T) {
	dir := t.TempDir()
	writeWAV(t, filepath.Join(dir, "dnc.wav"), 1, 1, 8000, 16, 4000)
	writeWAV(t, filepath.Join(dir, "blocked.wav"), 7, 1, 8000, 8, 8000) // mu-law
	const file = `lists:
  - name: dnc
    numbers: ["+12025550100"]
rules:
  - {name: own, type: dnc, lists: [dnc], action: {type: reject, announce: {prompt: dnc.wav, repeat: 2}}}
  - {name: quiet, type: dnc, lists: [dnc], action: {type: reject, announce: {sit: none}}}
  - {name: plain, type: dnc, lists: [dnc], action: {type: reject}}
announce:
  inside: {prompt: blocked.wav}
`
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	var f policy.File
	if err := LoadFile(path, &f); err != nil {
		t.Fatal(err)
	}
	e, err := policy.Compile([]policy.File{f}, policy.FileLoader(func(p string) string { return p }, time.Time{}), store.NewMemory(), nil)
	if err != nil {
		t.Fatal(err)
	}
	name := func(realm string, i int) string {
		a := e.Announcement(realm, &f.Rules[i].Action)
		if a == nil {
			return "none"
		}
		return fmt.Sprintf("%s %s", a.Name, a.Duration)
	}
	for _, tc := range []struct {
		realm string
		rule  int
		want  string
	}{
		{"inside", 0, "intercept+dnc.wav x2 1.928s"},
		{"inside", 1, "none"},
		{"inside", 2, "intercept+blocked.wav 1.928s"},
		{"outside", 2, "none"},
		{"outside", 0, "intercept+dnc.wav x2 1.928s"},
	} {
		if got := name(tc.realm, tc.rule); got != tc.want {
			t.Errorf("realm %s rule %s: %s, want %s", tc.realm, f.Rules[tc.rule].Name, got, tc.want)
		}
	}
	// A second file cannot set the realm's announcement again.
	if _, err := policy.Compile([]policy.File{f, f}, policy.FileLoader(func(p string) string { return p }, time.Time{}), store.NewMemory(), nil); err == nil {
		t.Error("two files set the inside announcement: no error")
	}
}
