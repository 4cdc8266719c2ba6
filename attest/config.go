package attest

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Config is the `attest:` section of stirgate.yaml: the authentication
// service that signs INVITEs arriving in the inside realm. Validate errors
// start with their YAML key path.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Key and Cert are the SP's private key and certificate chain (leaf
	// first), the chain published at X5U. Relative paths resolve against the
	// config file.
	Key  string `yaml:"key"`
	Cert string `yaml:"cert"`
	X5U  string `yaml:"x5u"`
	// CertMaxAge is the Cache-Control max-age stirgate's x5u repository
	// sends with the chain.
	CertMaxAge time.Duration `yaml:"cert_max_age"`
	// DevPKI creates a test PKI at the key/cert paths when they do not exist
	// (never in production mode).
	DevPKI bool `yaml:"dev_pki"`

	// IdentityFromInside is what to do with an Identity header the PBX sent:
	// refuse (403), replace (sign anew), or pass (keep it when the customer
	// signs_itself, refuse otherwise).
	IdentityFromInside string `yaml:"identity_from_inside"`
	// NoNumber is what to do when the calling or called number is missing,
	// anonymous or not a telephone number: SHAKEN cannot sign it. "unsigned"
	// forwards it without Identity; "reject" answers 403.
	NoNumber string `yaml:"no_number"`
	// CalledNumber is where the called number is read: request_uri or to.
	CalledNumber string `yaml:"called_number"`
	// UnknownSource is the attestation for a source that is no customer's:
	// C (gateway) or reject (403). Never A or B.
	UnknownSource string `yaml:"unknown_source"`
	// Unauthenticated is the highest attestation of a call from the source
	// address of a customer that has tls_identities when the call did not
	// come with one of its certificates (over UDP, TCP, or TLS without
	// it): B, C (default) or reject. A source address is easy to spoof; a
	// client certificate is not.
	Unauthenticated string `yaml:"unauthenticated"`

	Customers []Customer `yaml:"customers"`
}

// Customer is an authenticated origination point: a PBX or dialler of ours.
type Customer struct {
	Name string `yaml:"name"`
	// Sources are the networks its calls come from.
	Sources []string `yaml:"sources"`
	// TLSIdentities are the client certificates that authenticate it over
	// mutual TLS: "subject:CN=pbx1.example.net,O=Example" (the subject as
	// RFC 2253 writes it), "dns:pbx1.example.net" or "uri:sip:pbx1@example.net"
	// (a subjectAltName), or "spki:" and the hex SHA-256 of its public key.
	// A call that comes with one of them belongs to this customer,
	// whatever its source address; one from its sources without it gets at
	// most the attestation unauthenticated.
	TLSIdentities []string `yaml:"tls_identities"`
	// Numbers it owns: "12025550100" exact, "1202555*" prefix,
	// "12025550100..12025550199" range. "+" and visual separators are ignored.
	Numbers []string `yaml:"numbers"`
	// UnknownNumber is the attestation when the calling number is not one of
	// Numbers: B (default), C or reject.
	UnknownNumber string `yaml:"unknown_number"`
	// TrustPAI: its P-Asserted-Identity names the caller (else From does).
	TrustPAI bool `yaml:"trust_pai"`
	// Gateway traffic (calls it relays from elsewhere) is attested C.
	Gateway bool `yaml:"gateway"`
	// SignsItself: an Identity header it sends is kept when
	// identity_from_inside is "pass".
	SignsItself bool `yaml:"signs_itself"`
	// OrigID is its fixed origid (RFC 8588) for traceback; empty means a
	// new UUID per call, mapped to the customer in the call record.
	OrigID string `yaml:"origid"`
}

// ApplyDefaults fills absent values.
func (c *Config) ApplyDefaults() {
	if c.CertMaxAge == 0 {
		c.CertMaxAge = time.Hour
	}
	if c.IdentityFromInside == "" {
		c.IdentityFromInside = "refuse"
	}
	if c.NoNumber == "" {
		c.NoNumber = "unsigned"
	}
	if c.CalledNumber == "" {
		c.CalledNumber = "request_uri"
	}
	if c.UnknownSource == "" {
		c.UnknownSource = "C"
	}
	if c.Unauthenticated == "" {
		c.Unauthenticated = "C"
	}
	for i := range c.Customers {
		if c.Customers[i].UnknownNumber == "" {
			c.Customers[i].UnknownNumber = "B"
		}
	}
}

func oneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
}

// Validate checks the section; with enabled: false only the shape is checked.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Enabled {
		if c.Key == "" {
			add(errors.New("key: required when enabled"))
		}
		if c.Cert == "" {
			add(errors.New("cert: required when enabled"))
		}
		if err := checkX5U(c.X5U); err != nil {
			add(fmt.Errorf("x5u: %w", err))
		}
	}
	if c.CertMaxAge <= 0 || c.CertMaxAge > 7*24*time.Hour {
		add(fmt.Errorf("cert_max_age: %s: want more than 0, at most 168h", c.CertMaxAge))
	}
	add(oneOf("identity_from_inside", c.IdentityFromInside, "refuse", "replace", "pass"))
	add(oneOf("no_number", c.NoNumber, "unsigned", "reject"))
	add(oneOf("called_number", c.CalledNumber, "request_uri", "to"))
	add(oneOf("unknown_source", c.UnknownSource, "C", "reject"))
	add(oneOf("unauthenticated", c.Unauthenticated, "B", "C", "reject"))
	names := map[string]bool{}
	for i, cu := range c.Customers {
		p := fmt.Sprintf("customers[%d].", i)
		if cu.Name == "" {
			add(errors.New(p + "name: required"))
		} else if names[cu.Name] {
			add(fmt.Errorf("%sname: %q is used twice", p, cu.Name))
		}
		names[cu.Name] = true
		if len(cu.Sources) == 0 && len(cu.TLSIdentities) == 0 {
			add(errors.New(p + "sources: at least one network (or tls_identities) is required"))
		}
		for j, id := range cu.TLSIdentities {
			if err := checkTLSIdentity(id); err != nil {
				add(fmt.Errorf("%stls_identities[%d]: %w", p, j, err))
			}
		}
		for j, s := range cu.Sources {
			if _, err := parsePrefix(s); err != nil {
				add(fmt.Errorf("%ssources[%d]: %w", p, j, err))
			}
		}
		for j, n := range cu.Numbers {
			if _, err := parseNumberRule(n); err != nil {
				add(fmt.Errorf("%snumbers[%d]: %w", p, j, err))
			}
		}
		add(oneOf(p+"unknown_number", cu.UnknownNumber, "B", "C", "reject"))
		if cu.OrigID != "" {
			if _, err := uuid.Parse(cu.OrigID); err != nil {
				add(fmt.Errorf("%sorigid: %q is not a UUID", p, cu.OrigID))
			}
		}
	}
	return errors.Join(errs...)
}

// checkTLSIdentity accepts subject:, dns:, uri: and spki: (64 hex digits).
func checkTLSIdentity(id string) error {
	kind, v, ok := strings.Cut(id, ":")
	switch {
	case !ok || v == "":
		return fmt.Errorf("%q: want subject:DN, dns:NAME, uri:URI or spki:SHA256HEX", id)
	case kind == "subject", kind == "dns", kind == "uri":
		return nil
	case kind == "spki":
		if len(v) != 64 || strings.Trim(strings.ToLower(v), "0123456789abcdef") != "" {
			return fmt.Errorf("%q: spki: wants the 64 hex digits of a SHA-256", id)
		}
		return nil
	}
	return fmt.Errorf("%q: want subject:DN, dns:NAME, uri:URI or spki:SHA256HEX", id)
}

// checkX5U accepts an absolute http(s) URL without userinfo or fragment.
func checkX5U(s string) error {
	if s == "" {
		return errors.New("required when enabled")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	if u.User != nil || u.Fragment != "" || strings.ContainsAny(s, "\"\\;<> \r\n") {
		return fmt.Errorf("%q: no userinfo, fragment, quotes, ';', '<', '>' or spaces", s)
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
