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

// TestImportRules keeps the package boundaries of DESIGN.md true: only sip
// (and integration) import sipgo, only configs imports YAML, certs imports
// nothing of ours, the domain cores import sip only from handler.go.
func TestImportRules(t *testing.T) {
	root := ".."
	ours := func(imp string) bool { return strings.HasPrefix(imp, module+"/") }
	sipgo := func(imp string) bool { return strings.HasPrefix(imp, "github.com/emiago/sipgo") }
	yaml := func(imp string) bool { return strings.Contains(imp, "yaml") }
	checks := []struct {
		name string
		bad  func(pkg, file, imp string) bool
	}{
		{"only sip and integration import sipgo", func(pkg, _, imp string) bool {
			return sipgo(imp) && pkg != "sip" && pkg != "integration"
		}},
		{"only configs imports yaml", func(pkg, _, imp string) bool {
			return yaml(imp) && pkg != "configs"
		}},
		{"certs imports nothing of ours", func(pkg, _, imp string) bool {
			return pkg == "certs" && ours(imp)
		}},
		{"sip imports nothing of ours", func(pkg, _, imp string) bool {
			return pkg == "sip" && ours(imp)
		}},
		{"attest, verify, policy import sip only from handler.go", func(pkg, file, imp string) bool {
			domain := pkg == "attest" || pkg == "verify" || pkg == "policy"
			return domain && imp == module+"/sip" && filepath.Base(file) != "handler.go" && !strings.HasSuffix(file, "_test.go")
		}},
		{"domain cores import only sip, certs and attest of ours", func(pkg, _, imp string) bool {
			domain := pkg == "attest" || pkg == "verify" || pkg == "policy"
			if !domain || !ours(imp) {
				return false
			}
			rel := strings.TrimPrefix(imp, module+"/")
			top := strings.SplitN(rel, "/", 2)[0]
			return top != "sip" && top != "certs" && top != pkg && !(pkg == "verify" && top == "attest")
		}},
	}
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
		pkg := strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, is := range f.Imports {
			imp, _ := strconv.Unquote(is.Path.Value)
			for _, c := range checks {
				if c.bad(pkg, rel, imp) {
					t.Errorf("%s imports %s: breaks %q", rel, imp, c.name)
				}
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
