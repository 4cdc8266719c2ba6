package verify

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config is the `verify:` section of stirgate.yaml: the verification
// service for INVITEs arriving in the outside realm. Validate errors start
// with their YAML key path.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Trust: STI-CA root certificates (PEM files and directories of them)
	// and CRL files (re-read when they change).
	TrustRoots []string `yaml:"trust_roots"`
	TrustDirs  []string `yaml:"trust_dirs"`
	CRLs       []string `yaml:"crls"`
	// Freshness, two-sided: iat older than MaxAge or more than MaxSkew in
	// the future is 403 Stale Date.
	MaxAge  time.Duration `yaml:"max_age"`
	MaxSkew time.Duration `yaml:"max_skew"`
	// OnAnonymous: no calling telephone number: reject (433) | forward
	// (unverified, verstat No-TN-Validation).
	OnAnonymous string `yaml:"on_anonymous"`
	// OnMissing: no Identity header: forward (verstat No-TN-Validation) |
	// reject (428).
	OnMissing string `yaml:"on_missing"`
	// OnFailure: verification failed: reject (with the RFC 8224 code) |
	// forward (verstat TN-Validation-Failed, and a Reason: STIR header on
	// the response, RFC 9410).
	OnFailure string `yaml:"on_failure"`
	// MinAttest rejects (403) verified calls attested below it: "" | A | B.
	MinAttest string `yaml:"min_attest"`
	// CalledNumber is where the called number is read: request_uri | to.
	CalledNumber string `yaml:"called_number"`
	// Budget bounds the whole verification of one call, fetch included.
	Budget time.Duration `yaml:"budget"`

	X5U X5UConfig `yaml:"x5u"`
}

// X5UConfig is the policy for fetching certificates (SSRF guard, limits,
// cache).
type X5UConfig struct {
	AllowHTTP       bool          `yaml:"allow_http"`
	Ports           []int         `yaml:"ports"`
	AllowQuery      bool          `yaml:"allow_query"`
	AllowHosts      []string      `yaml:"allow_hosts"`
	DenyHosts       []string      `yaml:"deny_hosts"`
	AllowAddresses  []string      `yaml:"allow_addresses"` // special-purpose ranges explicitly allowed
	Timeout         time.Duration `yaml:"timeout"`
	MaxBody         int64         `yaml:"max_body"`
	CacheMin        time.Duration `yaml:"cache_min"`
	CacheMax        time.Duration `yaml:"cache_max"`
	NegativeTTL     time.Duration `yaml:"negative_ttl"`
	BreakerFailures int           `yaml:"breaker_failures"`
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`
}

// ApplyDefaults fills absent values.
func (c *Config) ApplyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.MaxAge, 60*time.Second)
	def(&c.MaxSkew, 10*time.Second)
	def(&c.Budget, 3*time.Second)
	if c.OnAnonymous == "" {
		c.OnAnonymous = "forward"
	}
	if c.OnMissing == "" {
		c.OnMissing = "forward"
	}
	if c.OnFailure == "" {
		c.OnFailure = "reject"
	}
	if c.CalledNumber == "" {
		c.CalledNumber = "request_uri"
	}
	x := &c.X5U
	if len(x.Ports) == 0 {
		x.Ports = []int{443, 8443}
	}
	def(&x.Timeout, 2*time.Second)
	if x.MaxBody == 0 {
		x.MaxBody = 64 << 10
	}
	def(&x.CacheMin, 5*time.Minute)
	def(&x.CacheMax, 24*time.Hour)
	def(&x.NegativeTTL, 10*time.Second)
	if x.BreakerFailures == 0 {
		x.BreakerFailures = 5
	}
	def(&x.BreakerCooldown, 30*time.Second)
}

func oneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
}

// Validate checks the section.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Enabled && len(c.TrustRoots) == 0 && len(c.TrustDirs) == 0 {
		add(errors.New("trust_roots: at least one trusted STI-CA root (or trust_dirs) is required when enabled"))
	}
	if c.MaxAge < time.Second || c.MaxAge > time.Hour {
		add(fmt.Errorf("max_age: %s out of range 1s..1h", c.MaxAge))
	}
	if c.MaxSkew <= 0 || c.MaxSkew > 10*time.Minute {
		add(fmt.Errorf("max_skew: %s: want more than 0, at most 10m", c.MaxSkew))
	}
	if c.Budget < 100*time.Millisecond || c.Budget > 30*time.Second {
		add(fmt.Errorf("budget: %s out of range 100ms..30s", c.Budget))
	}
	add(oneOf("on_anonymous", c.OnAnonymous, "reject", "forward"))
	add(oneOf("on_missing", c.OnMissing, "forward", "reject"))
	add(oneOf("on_failure", c.OnFailure, "reject", "forward"))
	add(oneOf("min_attest", c.MinAttest, "", "A", "B"))
	add(oneOf("called_number", c.CalledNumber, "request_uri", "to"))
	x := c.X5U
	for i, p := range x.Ports {
		if p < 1 || p > 65535 {
			add(fmt.Errorf("x5u.ports[%d]: %d is not a port", i, p))
		}
	}
	for i, a := range x.AllowAddresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			if _, err2 := netip.ParseAddr(a); err2 != nil {
				add(fmt.Errorf("x5u.allow_addresses[%d]: %q is not an address or CIDR", i, a))
			}
		}
	}
	for i, h := range append(append([]string{}, x.AllowHosts...), x.DenyHosts...) {
		if h == "" || strings.ContainsAny(h, "/:@ ") {
			key := "x5u.allow_hosts"
			j := i
			if i >= len(x.AllowHosts) {
				key, j = "x5u.deny_hosts", i-len(x.AllowHosts)
			}
			add(fmt.Errorf("%s[%d]: %q is not a host name or *.suffix", key, j, h))
		}
	}
	if x.Timeout < 50*time.Millisecond || x.Timeout > c.Budget {
		add(fmt.Errorf("x5u.timeout: %s out of range 50ms..budget (%s)", x.Timeout, c.Budget))
	}
	if x.MaxBody < 1024 || x.MaxBody > 1<<20 {
		add(fmt.Errorf("x5u.max_body: %d out of range 1024..1048576", x.MaxBody))
	}
	if x.CacheMin > x.CacheMax {
		add(fmt.Errorf("x5u.cache_min: %s is above cache_max %s", x.CacheMin, x.CacheMax))
	}
	if x.BreakerFailures < 1 {
		add(errors.New("x5u.breaker_failures: at least 1"))
	}
	return errors.Join(errs...)
}
