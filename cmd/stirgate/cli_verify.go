package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/certs"
	"github.com/stirgate/stirgate/verify"
)

// verdictJSON is what `stirgate verify` prints.
type verdictJSON struct {
	Passed  bool   `json:"passed"`
	Code    int    `json:"sip_code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Detail  string `json:"detail,omitempty"`
	Verstat string `json:"verstat"`
	Attest  string `json:"attest,omitempty"`
	OrigID  string `json:"origid,omitempty"`
	X5U     string `json:"x5u,omitempty"`
	SPC     string `json:"spc,omitempty"`
}

// verifyCommand runs `stirgate verify`: the same checks as the outside
// realm, on one Identity value; exit 0 only when it passed.
func verifyCommand(args []string) int {
	fs := newFlags("verify", "stirgate verify --identity VALUE --orig TN --dest TN --trust FILE... [--at UNIX] [--cert FILE]")
	identity := fs.String("identity", "", "Identity header value")
	orig := fs.String("orig", "", "calling number")
	dest := fs.String("dest", "", "called number")
	var trust stringList
	fs.Var(&trust, "trust", "trusted STI-CA root certificate file (repeatable)")
	at := fs.Int64("at", 0, "verify as of this Unix time (default: now)")
	certFile := fs.String("cert", "", "certificate chain file to use instead of fetching x5u")
	maxAge := fs.Duration("max-age", 60*time.Second, "freshness window")
	allowHTTP := fs.Bool("allow-http", false, "allow http x5u URLs (labs)")
	var allowAddrs, ports stringList
	fs.Var(&allowAddrs, "allow-address", "special-purpose address range x5u may resolve to (repeatable, labs)")
	fs.Var(&ports, "allow-port", "x5u port to allow besides 443 and 8443 (repeatable)")
	if !parseFlags(fs, args, 0, 0) {
		return 2
	}
	x5u := verify.X5UConfig{AllowHTTP: *allowHTTP, AllowAddresses: allowAddrs, Ports: []int{443, 8443}}
	if *allowHTTP {
		x5u.Ports = append(x5u.Ports, 80)
	}
	for _, p := range ports {
		n, err := strconv.Atoi(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "stirgate verify: --allow-port %q is not a number\n", p)
			return 2
		}
		x5u.Ports = append(x5u.Ports, n)
	}
	v, err := verifyOnce(*identity, *orig, *dest, trust, *at, *certFile, *maxAge, x5u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stirgate verify:", err)
		return 2
	}
	out := verdictJSON{Passed: v.Passed, Verstat: v.Verstat, Attest: v.Attest, OrigID: v.OrigID, X5U: v.X5U, SPC: v.SPC}
	if !v.Passed {
		out.Code, out.Reason, out.Detail = v.Code, v.Reason, v.Detail
		if v.Kind != nil {
			out.Kind = v.Kind.Error()
		}
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	if !v.Passed {
		return 1
	}
	return 0
}

func verifyOnce(identity, orig, dest string, trust []string, at int64, certFile string, maxAge time.Duration, x5u verify.X5UConfig) (verify.Verdict, error) {
	if identity == "" || orig == "" || dest == "" || len(trust) == 0 {
		return verify.Verdict{}, errors.New("--identity, --orig, --dest and --trust are required")
	}
	o, ok := passport.Canonical(orig)
	if !ok {
		return verify.Verdict{}, fmt.Errorf("--orig %q is not a telephone number", orig)
	}
	d, ok := passport.Canonical(dest)
	if !ok {
		return verify.Verdict{}, fmt.Errorf("--dest %q is not a telephone number", dest)
	}
	cfg := verify.Config{Enabled: true, TrustRoots: trust, MaxAge: maxAge, X5U: x5u}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return verify.Verdict{}, err
	}
	now := time.Now
	if at != 0 {
		now = func() time.Time { return time.Unix(at, 0) }
	}
	store, err := certs.NewTrustStore(trust, nil, nil)
	if err != nil {
		return verify.Verdict{}, err
	}
	var src verify.CertSource
	if certFile != "" {
		_, chain, err := certs.LoadChainPEM(certFile)
		if err != nil {
			return verify.Verdict{}, err
		}
		src = verify.StaticSource(chain)
	} else {
		f, err := certs.NewFetcher(cfg.X5U.Policy())
		if err != nil {
			return verify.Verdict{}, err
		}
		src = verify.FetcherSource{Fetcher: f}
	}
	svc := verify.New(cfg, src, verify.TrustCredentials{Store: store}, verify.NewMemoryReplay(), now)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Budget)
	defer cancel()
	return svc.Verify(ctx, verify.Input{Orig: o, Dest: d, Identities: []string{identity}}), nil
}
