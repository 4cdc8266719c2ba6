package store

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the `state:` section of stirgate.yaml: where the policy state
// and the verifier's replay cache live. memory (the default) keeps them in
// the process; redis shares them between the nodes that serve one address.
type Config struct {
	// Backend: memory | redis.
	Backend string      `yaml:"backend"`
	Redis   RedisConfig `yaml:"redis"`
}

// RedisConfig says how to reach Redis. The password is read from a file
// (mode 0600) and never appears in the YAML or the logs.
type RedisConfig struct {
	// Mode: standalone (one address), sentinel (addresses of the sentinels
	// and master_name) or cluster (seed addresses of a Redis Cluster).
	Mode       string   `yaml:"mode"`
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	// Username and the password file of a Redis ACL user (AUTH user pass);
	// both empty: no AUTH.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// DB selects the logical database (standalone and sentinel only).
	DB  int       `yaml:"db"`
	TLS TLSConfig `yaml:"tls"`
	// Timeout bounds every store operation of a call (one round trip): on
	// expiry the rule's on_store_error applies. It must fit the call's
	// budget: a few milliseconds on a LAN.
	Timeout time.Duration `yaml:"timeout"`
	// DialTimeout bounds a (re)connection attempt, off the call path.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// KeyPrefix is put before every key, so several deployments can share
	// one Redis.
	KeyPrefix string `yaml:"key_prefix"`
}

// TLSConfig is TLS to Redis: the CA that signs the server's certificate,
// and a client certificate when Redis asks for one (tls-auth-clients).
type TLSConfig struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Defaults of the redis backend.
const (
	// DefaultRedisTimeout is 20 ms, not the few ms a Redis round trip
	// takes on a LAN: at 1,000 calls/s on a 2-core VM shared with SIPp,
	// 5 ms timed out 2-5% of operations (the machine's scheduling tail,
	// not Redis), 20 ms none. Two stages cost at most 40 ms, far inside
	// SIP's 500 ms retransmission timer.
	DefaultRedisTimeout     = 20 * time.Millisecond
	DefaultRedisDialTimeout = time.Second
	DefaultKeyPrefix        = "stirgate:"
)

// ApplyDefaults fills absent values.
func (c *Config) ApplyDefaults() {
	if c.Backend == "" {
		c.Backend = "memory"
	}
	if c.Backend != "redis" {
		return
	}
	r := &c.Redis
	if r.Mode == "" {
		r.Mode = "standalone"
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultRedisTimeout
	}
	if r.DialTimeout == 0 {
		r.DialTimeout = DefaultRedisDialTimeout
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultKeyPrefix
	}
}

// Validate checks the section; each error starts with its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Backend {
	case "memory":
		return nil
	case "redis":
	default:
		add("backend: %q is not one of memory, redis", c.Backend)
		return errors.Join(errs...)
	}
	r := c.Redis
	switch r.Mode {
	case "standalone", "sentinel", "cluster":
	default:
		add("redis.mode: %q is not one of standalone, sentinel, cluster", r.Mode)
	}
	if len(r.Addrs) == 0 {
		add("redis.addrs: at least one host:port")
	}
	if r.Mode == "standalone" && len(r.Addrs) > 1 {
		add("redis.addrs: standalone takes one address (sentinel and cluster take several)")
	}
	for i, a := range r.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			add("redis.addrs[%d]: %q is not host:port", i, a)
		}
	}
	if (r.Mode == "sentinel") != (r.MasterName != "") {
		add("redis.master_name: required with mode sentinel, and only there")
	}
	if r.Mode == "cluster" && r.DB != 0 {
		add("redis.db: a Redis Cluster has database 0 only")
	}
	if r.DB < 0 || r.DB > 15 {
		add("redis.db: %d out of range 0..15", r.DB)
	}
	if r.Username != "" && r.PasswordFile == "" {
		add("redis.password_file: required with a username (the password is never in the YAML)")
	}
	if r.Timeout < 100*time.Microsecond || r.Timeout > time.Second {
		add("redis.timeout: %s out of range 100µs..1s", r.Timeout)
	}
	if r.DialTimeout < 10*time.Millisecond || r.DialTimeout > time.Minute {
		add("redis.dial_timeout: %s out of range 10ms..1m", r.DialTimeout)
	}
	if t := r.TLS; !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "") {
		add("redis.tls.enabled: false, but tls files or server_name are set")
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		add("redis.tls.cert_file: cert_file and key_file go together")
	}
	return errors.Join(errs...)
}
