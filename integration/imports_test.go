package integration

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/stirgate/stirgate"

// passportPkg is the leaf every package may import (docs/DESIGN.md).
const passportPkg = module + "/attest/passport"

// mediaPkg plays announcements (SDP, RTP): the edge and the policy (which
// loads the prompts its rules name) use it.
const mediaPkg = module + "/sip/media"

func ours(imp string) bool { return strings.HasPrefix(imp, module+"/") }

// importRule is one boundary of docs/DESIGN.md: bad reports whether file (path
// from the repository root) of top-level package pkg breaks it by
// importing imp.
type importRule struct {
	name string
	bad  func(pkg, file, imp string) bool
}

var importRules = []importRule{
	{"only sip and integration import sipgo", func(pkg, _, imp string) bool {
		return strings.HasPrefix(imp, "github.com/emiago/sipgo") && pkg != "sip" && pkg != "integration"
	}},
	{"only configs imports yaml", func(pkg, _, imp string) bool {
		return strings.Contains(imp, "yaml") && pkg != "configs"
	}},
	{"only policy/store imports the Redis client", func(_, file, imp string) bool {
		redis := strings.HasPrefix(imp, "github.com/redis/") || strings.HasPrefix(imp, "github.com/valkey-io/")
		return redis && !strings.HasPrefix(filepath.ToSlash(file), "policy/store/")
	}},
	{"only policy/records imports database drivers", func(_, file, imp string) bool {
		driver := strings.HasPrefix(imp, "modernc.org/sqlite") || strings.HasPrefix(imp, "github.com/jackc/pgx") || imp == "database/sql"
		return driver && !strings.HasPrefix(filepath.ToSlash(file), "policy/records/")
	}},
	{"certs imports nothing of ours", func(pkg, _, imp string) bool {
		return pkg == "certs" && ours(imp)
	}},
	{"attest/passport imports nothing of ours", func(_, file, imp string) bool {
		return strings.HasPrefix(filepath.ToSlash(file), "attest/passport/") && ours(imp)
	}},
	{"sip imports nothing of ours but attest/passport and sip/media", func(pkg, _, imp string) bool {
		return pkg == "sip" && ours(imp) && imp != passportPkg && imp != mediaPkg
	}},
	{"only sip/media imports pion", func(_, file, imp string) bool {
		return strings.HasPrefix(imp, "github.com/pion/") && !strings.HasPrefix(filepath.ToSlash(file), "sip/media/")
	}},
	{"sip/media imports no sipgo and nothing of ours", func(_, file, imp string) bool {
		media := strings.HasPrefix(filepath.ToSlash(file), "sip/media/")
		return media && (strings.HasPrefix(imp, "github.com/emiago/sipgo") || ours(imp))
	}},
	{"attest, verify, policy import sip only from handler.go", func(pkg, file, imp string) bool {
		domain := pkg == "attest" || pkg == "verify" || pkg == "policy"
		return domain && imp == module+"/sip" && filepath.Base(file) != "handler.go" && !strings.HasSuffix(file, "_test.go")
	}},
	{"domain cores import only sip, certs, attest/passport and attest of ours", func(pkg, _, imp string) bool {
		domain := pkg == "attest" || pkg == "verify" || pkg == "policy"
		if !domain || !ours(imp) || imp == passportPkg {
			return false
		}
		rel := strings.TrimPrefix(imp, module+"/")
		top := strings.SplitN(rel, "/", 2)[0]
		return top != "sip" && top != "certs" && top != pkg && !(pkg == "verify" && top == "attest")
	}},
}

// broken names the rules file breaks by importing imp.
func broken(file, imp string) []string {
	pkg := strings.SplitN(filepath.ToSlash(file), "/", 2)[0]
	var out []string
	for _, r := range importRules {
		if r.bad(pkg, file, imp) {
			out = append(out, r.name)
		}
	}
	return out
}

// TestImportRules keeps the package boundaries of docs/DESIGN.md true: only
// sip (and integration) import sipgo, only configs imports YAML, only
// policy/store imports the Redis client, only policy/records a database
// driver, only sip/media pion (and it imports no sipgo), certs and
// attest/passport import nothing of ours, anyone may import
// attest/passport, the domain cores import sip only from handler.go.
func TestImportRules(t *testing.T) {
	root := ".."
	files := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, is := range f.Imports {
			imp, _ := strconv.Unquote(is.Path.Value)
			for _, name := range broken(rel, imp) {
				t.Errorf("%s imports %s: breaks %q", rel, imp, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("checked only %d Go files: wrong root?", files)
	}
}

// TestImportRulesCatch: each rule refuses the import it exists for and lets
// the allowed ones through, so a rule that can no longer fail is noticed.
func TestImportRulesCatch(t *testing.T) {
	tests := []struct {
		file, imp, want string // want "": allowed
	}{
		{"attest/passport/passport.go", module + "/certs", "attest/passport imports nothing of ours"},
		{"attest/passport/passport.go", module + "/attest", "attest/passport imports nothing of ours"},
		{"attest/passport/passport.go", "errors", ""},
		{"sip/headers.go", passportPkg, ""},
		{"sip/headers.go", module + "/attest", "sip imports nothing of ours but attest/passport and sip/media"},
		{"sip/announce.go", mediaPkg, ""},
		{"policy/config.go", mediaPkg, ""},
		{"sip/media/stream.go", "github.com/pion/rtp", ""},
		{"sip/announce.go", "github.com/pion/sdp/v3", "only sip/media imports pion"},
		{"sip/media/sdp.go", "github.com/emiago/sipgo/sip", "sip/media imports no sipgo and nothing of ours"},
		{"sip/media/sdp.go", passportPkg, "sip/media imports no sipgo and nothing of ours"},
		{"policy/numbers/numbers.go", passportPkg, ""},
		{"policy/engine.go", passportPkg, ""},
		{"policy/engine.go", module + "/attest", "domain cores import only sip, certs, attest/passport and attest of ours"},
		{"verify/passport.go", passportPkg, ""},
		{"verify/passport.go", module + "/attest", ""},
		{"verify/service.go", module + "/sip", "attest, verify, policy import sip only from handler.go"},
		{"attest/service.go", passportPkg, ""},
		{"certs/fetch.go", passportPkg, "certs imports nothing of ours"},
		{"cmd/stirgate/cli_pki.go", passportPkg, ""},
		{"integration/bench/bench.go", passportPkg, ""},
		{"attest/service.go", "github.com/emiago/sipgo/sip", "only sip and integration import sipgo"},
		{"certs/x.go", "gopkg.in/yaml.v3", "only configs imports yaml"},
		{"policy/store/redis.go", "github.com/redis/rueidis", ""},
		{"cmd/stirgate/state.go", "github.com/redis/rueidis", "only policy/store imports the Redis client"},
		{"integration/bench/redis.go", "github.com/redis/go-redis/v9", "only policy/store imports the Redis client"},
		{"policy/records/sqlite.go", "modernc.org/sqlite", ""},
		{"policy/records/sqlite.go", "database/sql", ""},
		{"cmd/stirgate/serve.go", "modernc.org/sqlite", "only policy/records imports database drivers"},
		{"policy/store/redis.go", "github.com/jackc/pgx/v5", "only policy/records imports database drivers"},
	}
	for _, tt := range tests {
		got := broken(tt.file, tt.imp)
		switch {
		case tt.want == "" && len(got) != 0:
			t.Errorf("%s importing %s breaks %q; it is allowed", tt.file, tt.imp, got)
		case tt.want != "" && (len(got) != 1 || got[0] != tt.want):
			t.Errorf("%s importing %s breaks %q; want exactly %q", tt.file, tt.imp, got, tt.want)
		}
	}
}
