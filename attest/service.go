package attest

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stirgate/stirgate/attest/passport"
)

// Service is the authentication service of one configuration generation:
// customers compiled, signer ready. It is immutable and safe for concurrent
// use.
type Service struct {
	cfg       Config
	customers []customer
	signer    *Signer
	now       func() time.Time
}

type customer struct {
	Customer
	sources []netip.Prefix
	numbers numberSet
	tls     map[string]bool // TLSIdentities, spki: in lowercase
}

// Peer is the client certificate a call's TLS connection authenticated
// with (mutual TLS).
type Peer struct {
	Subject  string
	DNSNames []string
	URIs     []string
	SPKI     string // lowercase hex SHA-256 of the SubjectPublicKeyInfo
}

// keys are the tls_identities entries that name p.
func (p *Peer) keys() []string {
	keys := []string{"subject:" + p.Subject, "spki:" + p.SPKI}
	for _, d := range p.DNSNames {
		keys = append(keys, "dns:"+d)
	}
	for _, u := range p.URIs {
		keys = append(keys, "uri:"+u)
	}
	return keys
}

// How the customer of a call was identified (the call record's note).
const (
	BySource = "source" // its source address is in the customer's sources
	ByTLS    = "tls"    // its client certificate is one of tls_identities
)

// Call is what the service needs to know about a call (plain values: the
// handler copies them from the SIP edge's Call).
type Call struct {
	Source        netip.Addr
	FromTN, PAITN string // canonical numbers, "" when absent or not a number
	RURITN, ToTN  string
	Identities    int   // Identity headers the PBX sent
	TLS           *Peer // the client certificate of its TLS connection; nil: none
}

// Decision is the outcome for one call.
type Decision struct {
	Customer string
	// IdentifiedBy is how the customer was found: BySource or ByTLS.
	IdentifiedBy string
	Attest       passport.Level // "" when the call goes unsigned
	Orig         string         // the calling number signed for
	Dest         string
	OrigID       string
	Identity     string // the Identity header value to add; "" = add none
	X5U          string // its x5u and iat (for the call record)
	IAT          int64
	Keep         bool // keep the Identity headers the PBX sent (signs_itself)
}

// Refusal is a call the service refuses to sign or pass; the handler turns
// it into a SIP rejection.
type Refusal struct {
	Code   int
	Reason string
	Cause  string
}

func (r *Refusal) Error() string { return fmt.Sprintf("%d %s: %s", r.Code, r.Reason, r.Cause) }

// New compiles cfg (already validated) with the signer of its key and x5u.
func New(cfg Config, signer *Signer) (*Service, error) {
	if signer == nil {
		return nil, errors.New("attest: no signer")
	}
	s := &Service{cfg: cfg, signer: signer, now: time.Now}
	for _, cu := range cfg.Customers {
		c := customer{Customer: cu}
		for _, src := range cu.Sources {
			p, err := parsePrefix(src)
			if err != nil {
				return nil, fmt.Errorf("attest: customer %s: %w", cu.Name, err)
			}
			c.sources = append(c.sources, p)
		}
		c.tls = map[string]bool{}
		for _, id := range cu.TLSIdentities {
			if kind, v, _ := strings.Cut(id, ":"); kind == "spki" {
				id = kind + ":" + strings.ToLower(v)
			}
			c.tls[id] = true
		}
		ns, err := newNumberSet(cu.Numbers)
		if err != nil {
			return nil, fmt.Errorf("attest: customer %s: %w", cu.Name, err)
		}
		c.numbers = ns
		s.customers = append(s.customers, c)
	}
	return s, nil
}

// customerOf returns the first customer whose sources contain a.
func (s *Service) customerOf(a netip.Addr) *customer {
	a = a.Unmap()
	for i := range s.customers {
		for _, p := range s.customers[i].sources {
			if p.Contains(a) {
				return &s.customers[i]
			}
		}
	}
	return nil
}

func refuse(code int, reason, cause string) (Decision, error) {
	return Decision{}, &Refusal{Code: code, Reason: reason, Cause: cause}
}

// identify finds the customer of a call: by its client certificate
// first (mutual TLS), else by its source address; by says which.
func (s *Service) identify(source netip.Addr, peer *Peer) (cu *customer, by string) {
	if peer != nil {
		keys := peer.keys()
		for i := range s.customers {
			for _, k := range keys {
				if s.customers[i].tls[k] {
					return &s.customers[i], ByTLS
				}
			}
		}
	}
	if cu := s.customerOf(source); cu != nil {
		return cu, BySource
	}
	return nil, ""
}

// CustomerOf names the customer of a call from source with the client
// certificate peer (nil: none), and how it was identified ("", "" for
// none).
func (s *Service) CustomerOf(source netip.Addr, peer *Peer) (name, by string) {
	if c, by := s.identify(source, peer); c != nil {
		return c.Name, by
	}
	return "", ""
}

// Decide classifies the source, decides the attestation and signs.
func (s *Service) Decide(c Call) (Decision, error) {
	cu, by := s.identify(c.Source, c.TLS)
	var d Decision
	if cu != nil {
		d.Customer, d.IdentifiedBy = cu.Name, by
	}

	if c.Identities > 0 {
		switch {
		case s.cfg.IdentityFromInside == "replace":
		case s.cfg.IdentityFromInside == "pass" && cu != nil && cu.SignsItself:
			d.Keep = true
			return d, nil
		default:
			return refuse(403, "Forbidden", "Identity header from the inside realm")
		}
	}

	// Who is calling: PAI only from a source trusted to assert it.
	d.Orig = c.FromTN
	if cu != nil && cu.TrustPAI && c.PAITN != "" {
		d.Orig = c.PAITN
	}
	d.Dest = c.RURITN
	if s.cfg.CalledNumber == "to" {
		d.Dest = c.ToTN
	}
	if !passport.IsTN(d.Orig) || !passport.IsTN(d.Dest) {
		if s.cfg.NoNumber == "reject" {
			return refuse(403, "Forbidden", "no calling or called telephone number to sign")
		}
		return d, nil // unsigned
	}

	switch {
	case cu == nil:
		if s.cfg.UnknownSource == "reject" {
			return refuse(403, "Forbidden", "source is no customer's")
		}
		d.Attest = passport.LevelC
	case cu.Gateway:
		d.Attest = passport.LevelC
	case cu.numbers.has(d.Orig):
		d.Attest = passport.LevelA
	default:
		switch cu.UnknownNumber {
		case "reject":
			return refuse(403, "Forbidden", "calling number is not the customer's")
		case "C":
			d.Attest = passport.LevelC
		default:
			d.Attest = passport.LevelB
		}
	}

	if cu != nil && by == BySource && len(cu.tls) > 0 {
		// The customer authenticates with certificates; this call did not.
		switch s.cfg.Unauthenticated {
		case "reject":
			return refuse(403, "Forbidden", "customer "+cu.Name+" authenticates with a TLS client certificate; this call came without one")
		case "B":
			if d.Attest == passport.LevelA {
				d.Attest = passport.LevelB
			}
		default:
			d.Attest = passport.LevelC
		}
	}
	d.OrigID = uuid.NewString()
	if cu != nil && cu.OrigID != "" {
		d.OrigID = cu.OrigID
	}
	d.IAT = s.now().Unix()
	id, err := s.signer.Sign(passport.Claims{Attest: d.Attest, Orig: d.Orig, Dest: []string{d.Dest}, IAT: d.IAT, OrigID: d.OrigID})
	if err != nil {
		return Decision{}, err
	}
	d.Identity, d.X5U = id, s.signer.X5U()
	return d, nil
}
