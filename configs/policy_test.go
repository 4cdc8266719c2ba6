package configs

import (
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
