package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/sip"
)

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parenList returns the comma-separated names in the parentheses after
// intro in doc (comment markers and line breaks removed).
func parenList(t *testing.T, doc, intro string) []string {
	t.Helper()
	doc = strings.Join(strings.Fields(strings.ReplaceAll(doc, "#", "")), " ")
	_, rest, ok := strings.Cut(doc, intro+" (")
	if !ok {
		t.Fatalf("no %q in the document", intro)
	}
	list, _, _ := strings.Cut(rest, ")")
	names := strings.Split(list, ", ")
	slices.Sort(names)
	return names
}

// TestRuleTypesDocumented: every registered rule type is where a reader
// looks for it, with the stage, default code and statefulness the table
// gives it: the RuleConfig.Type doc, the example file, the README tables
// and the lists of types that keep state.
func TestRuleTypesDocumented(t *testing.T) {
	cfgGo := readDoc(t, "config.go")
	typeDoc := cfgGo[strings.Index(cfgGo, "// Type is one of"):strings.Index(cfgGo, "Type string `yaml:\"type\"`")]
	typeDoc = strings.Join(strings.Fields(strings.ReplaceAll(typeDoc, "//", "")), " ")
	example := readDoc(t, "../configs/policy.yaml")
	readme := readDoc(t, "README.md")
	topReadme := readDoc(t, "../README.md")
	stage := map[Phase]string{}
	for _, row := range regexp.MustCompile("(?m)^\\| `(policy(?:\\.verified)?)` \\|.*\\| (.*) \\|$").FindAllStringSubmatch(readme, -1) {
		stage[map[string]Phase{"policy": PhaseEarly, "policy.verified": PhaseVerified}[row[1]]] = ", " + row[2] + ","
	}
	var stateful []string
	for _, name := range typeNames() {
		typ := ruleTypes[name]
		if typ.stateful {
			stateful = append(stateful, name)
		}
		if !strings.Contains(typeDoc, name+" (") {
			t.Errorf("the RuleConfig.Type doc does not list %s", name)
		}
		if !strings.Contains(example, "type: "+name+"\n") {
			t.Errorf("configs/policy.yaml has no %s rule", name)
		}
		if !strings.Contains(topReadme, "`"+name+"`") {
			t.Errorf("README.md does not name %s", name)
		}
		if !strings.Contains(stage[typ.phase], " "+name+",") {
			t.Errorf("policy/README.md does not put %s in its stage (%d): %q", name, typ.phase, stage[typ.phase])
		}
		row := regexp.MustCompile(`(?m)^\| ` + name + ` \|.*\| (\d+)[^|]*\|$`).FindStringSubmatch(readme)
		if row == nil || row[1] != strconv.Itoa(typ.code) {
			t.Errorf("policy/README.md config table: %s row %q, want default reject %d", name, row, typ.code)
		}
	}
	for doc, intro := range map[string]string{
		readme:  "Rules that keep state in `policy/store`",
		example: "Rules that keep state in the policy store",
	} {
		if got := parenList(t, doc, intro); !slices.Equal(got, stateful) {
			t.Errorf("%q lists %v, want the types that keep state %v", intro, got, stateful)
		}
	}
}

// TestRejectionReason: the Reason header text names the rule and what it
// matched: "on list" only for list lookups.
func TestRejectionReason(t *testing.T) {
	f := baseFile()
	f.Rules = append(f.Rules,
		RuleConfig{Name: "anon", Type: "hygiene", Checks: []string{"anonymous"}, Match: MatchConfig{Realm: "outside"}, Action: ActionConfig{Type: "reject"}},
		RuleConfig{Name: "flood", Type: "rate", Key: "source", Limit: 1, Window: 10 * time.Second, Action: ActionConfig{Type: "reject"}})
	h := Handler{Engine: testEngine(t, f), Now: func() time.Time { return now }}
	src := netip.MustParseAddrPort("192.0.2.1:5060")
	for _, tt := range []struct {
		name       string
		orig, dest string
		want       string
		status     string // code and reason phrase of the response
	}{
		{"list", "19005550100", "12025559999", "rule block-spam: 1900* on list spam", "608 Rejected"},
		{"hygiene", "", "12025559999", "rule anon: anonymous", "608 Rejected"},
		{"rate", "14155550100", "12025559999", "rule flood: source 192.0.2.1 count=2 limit=1 window=10s", "503 Service Unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			for range 2 { // the rate rule allows one
				err = h.HandleCall(context.Background(), &sip.Call{Realm: "outside", Source: src, Orig: tt.orig, Dest: tt.dest})
			}
			var rej *sip.Rejection
			if !errors.As(err, &rej) || rej.Cause == nil || rej.Cause.Error() != tt.want {
				t.Fatalf("rejection %v, want cause %q", err, tt.want)
			}
			if got := fmt.Sprintf("%d %s", rej.Code, rej.Reason); got != tt.status {
				t.Fatalf("answered %q, want %q", got, tt.status)
			}
		})
	}
}

// TestEvaluateDoesNotAllocate: a call that passes list, dnc and hygiene
// rules costs no allocation (the rule table's evaluation functions return
// values; a pointer into the Decision would move it to the heap). Window
// rules and the invalid check allocate in libphonenumber.
func TestEvaluateDoesNotAllocate(t *testing.T) {
	f := baseFile()
	f.Rules = append(f.Rules,
		RuleConfig{Name: "hygiene", Type: "hygiene", Checks: []string{"anonymous", "same_number"}, Action: ActionConfig{Type: "reject"}})
	e := testEngine(t, f)
	in := Input{Realm: "inside", Customer: "dialler", Caller: "14155550100", Callee: "18005550100"}
	ctx := context.Background()
	if d := e.Evaluate(ctx, in, now); d.Reject != nil || len(d.Hits) != 0 {
		t.Fatalf("the call should pass every rule: %+v", d)
	}
	if n := testing.AllocsPerRun(100, func() { e.Evaluate(ctx, in, now) }); n != 0 {
		t.Fatalf("Evaluate allocates %v times per call, want 0", n)
	}
}
