package main

import (
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/certs"
	"github.com/stirgate/stirgate/configs"
)

// signing is what the authentication service of one generation needs: the
// service, and the handler that publishes its chain at the x5u URL's path.
type signing struct {
	service *attest.Service
	chain   http.Handler // certs.Repository of the chain
	x5uPath string
	maxAge  time.Duration    // attest.cert_max_age: how long verifiers may cache the chain
	key     crypto.PublicKey // what verifiers that cached the chain check signatures with
}

// loadSigning loads and checks the key and certificate of cfg.attest and
// compiles the service. It returns nil when signing is disabled.
func loadSigning(cfg *configs.Config) (*signing, error) {
	ac := cfg.Attest
	if !ac.Enabled {
		return nil, nil
	}
	s, err := certs.LoadSigner(cfg.Resolve(ac.Key), cfg.Resolve(ac.Cert), time.Now())
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	signer, err := attest.NewSigner(s.Key, ac.X5U)
	if err != nil {
		return nil, err
	}
	svc, err := attest.New(ac, signer)
	if err != nil {
		return nil, err
	}
	chain, err := certs.NewRepository(s.ChainPEM, ac.CertMaxAge)
	if err != nil {
		return nil, fmt.Errorf("attest.cert: %w", err)
	}
	u, _ := url.Parse(ac.X5U) // validated
	return &signing{service: svc, chain: chain, x5uPath: u.EscapedPath(), maxAge: ac.CertMaxAge, key: s.Key.Public()}, nil
}

// ensureDevPKI creates a test STI PKI where attest.key and attest.cert point
// when neither exists, dev_pki is on and the mode is development. It says so
// loudly: calls signed with it verify only where its root is trusted.
func ensureDevPKI(cfg *configs.Config, log *slog.Logger) error {
	ac := cfg.Attest
	if !ac.Enabled || !ac.DevPKI || cfg.Production() {
		return nil
	}
	key, cert := cfg.Resolve(ac.Key), cfg.Resolve(ac.Cert)
	_, kerr := os.Stat(key)
	_, cerr := os.Stat(cert)
	if kerr == nil || cerr == nil || !errors.Is(kerr, os.ErrNotExist) || !errors.Is(cerr, os.ErrNotExist) {
		return nil // something is there: load it as configured
	}
	dir := filepath.Dir(key)
	if filepath.Dir(cert) != dir || filepath.Base(key) != "sp.key" || filepath.Base(cert) != "sp.pem" {
		return fmt.Errorf("attest.dev_pki: the test PKI is written as sp.key and sp.pem in one directory; got %s and %s", key, cert)
	}
	u, _ := url.Parse(ac.X5U) // validated
	u.Path = path.Dir(u.Path) + "/"
	if err := certs.InitPKI(certs.InitOptions{Dir: dir, X5UBase: u.String()}); err != nil {
		return fmt.Errorf("attest.dev_pki: %w", err)
	}
	abs, _ := filepath.Abs(dir)
	log.Warn("CREATED A TEST STI PKI: calls are signed with a development certificate that no real verifier trusts; never use it in production",
		"dir", abs, "x5u", ac.X5U, "trust_root", filepath.Join(abs, "root.pem"))
	return nil
}
