package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/certs"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// certsCommand runs `stirgate certs init`.
func certsCommand(args []string) int {
	const synopsis = "stirgate certs init --dir DIR [--spc CODE] [--x5u-base URL] [--tn PREFIX...]"
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(os.Stderr, "usage: "+synopsis)
		return 2
	}
	fs := newFlags("certs init", synopsis)
	dir := fs.String("dir", "", "directory to write root.pem root.key ca.pem ca.key sp.pem sp.key into")
	spc := fs.String("spc", "", "service provider code in the SP certificate's TNAuthList")
	x5uBase := fs.String("x5u-base", "", "base URL where sp.pem will be published (printed as the x5u to configure)")
	var tns stringList
	fs.Var(&tns, "tn", "telephone number or prefix to add to the TNAuthList (repeatable)")
	if !parseFlags(fs, args[1:], 0, 0) {
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "stirgate certs init: --dir is required")
		return 2
	}
	if err := certs.InitPKI(certs.InitOptions{Dir: *dir, SPC: *spc, X5UBase: *x5uBase, TNs: tns}); err != nil {
		fmt.Fprintln(os.Stderr, "stirgate certs init:", err)
		return 1
	}
	fmt.Printf("wrote a test STI PKI to %s: root.pem root.key ca.pem ca.key sp.pem sp.key\n", *dir)
	if *x5uBase != "" {
		fmt.Printf("x5u: %s\n", strings.TrimSuffix(*x5uBase, "/")+"/sp.pem")
	}
	return 0
}

// signCommand runs `stirgate sign`: one Identity header value on stdout.
func signCommand(args []string) int {
	fs := newFlags("sign", "stirgate sign --key FILE --x5u URL --attest A|B|C --orig TN --dest TN [--origid UUID] [--iat UNIX]")
	keyFile := fs.String("key", "", "SP private key (PEM, SEC1 or PKCS#8, P-256)")
	x5u := fs.String("x5u", "", "URL of the SP certificate chain")
	level := fs.String("attest", "", "attestation: A, B or C")
	orig := fs.String("orig", "", "calling number")
	dest := fs.String("dest", "", "called number")
	origID := fs.String("origid", "", "origid UUID (default: a new one)")
	iat := fs.Int64("iat", 0, "issued-at, Unix seconds (default: now)")
	if !parseFlags(fs, args, 0, 0) {
		return 2
	}
	out, err := sign(*keyFile, *x5u, *level, *orig, *dest, *origID, *iat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stirgate sign:", err)
		return 1
	}
	fmt.Println(out)
	return 0
}

func sign(keyFile, x5u, level, orig, dest, origID string, iat int64) (string, error) {
	if keyFile == "" || x5u == "" || level == "" || orig == "" || dest == "" {
		return "", errors.New("--key, --x5u, --attest, --orig and --dest are required")
	}
	key, err := certs.LoadKey(keyFile)
	if err != nil {
		return "", err
	}
	s, err := attest.NewSigner(key, x5u)
	if err != nil {
		return "", err
	}
	o, ok := passport.Canonical(orig)
	if !ok {
		return "", fmt.Errorf("--orig %q is not a telephone number", orig)
	}
	d, ok := passport.Canonical(dest)
	if !ok {
		return "", fmt.Errorf("--dest %q is not a telephone number", dest)
	}
	if origID == "" {
		origID = uuid.NewString()
	}
	if iat == 0 {
		iat = time.Now().Unix()
	}
	return s.Sign(passport.Claims{Attest: passport.Level(level), Orig: o, Dest: []string{d}, IAT: iat, OrigID: origID})
}
