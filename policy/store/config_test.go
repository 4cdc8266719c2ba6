package store

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	redis := func(mut func(*RedisConfig)) Config {
		c := Config{Backend: "redis", Redis: RedisConfig{Addrs: []string{"127.0.0.1:6379"}}}
		mut(&c.Redis)
		c.ApplyDefaults()
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string // "" valid
	}{
		{"memory default", func() Config { var c Config; c.ApplyDefaults(); return c }(), ""},
		{"unknown backend", Config{Backend: "etcd"}, `backend: "etcd" is not one of memory, redis`},
		{"standalone", redis(func(*RedisConfig) {}), ""},
		{"no address", redis(func(r *RedisConfig) { r.Addrs = nil }), "redis.addrs: at least one"},
		{"bad address", redis(func(r *RedisConfig) { r.Addrs = []string{"localhost"} }), `redis.addrs[0]: "localhost" is not host:port`},
		{"standalone with two", redis(func(r *RedisConfig) { r.Addrs = append(r.Addrs, "127.0.0.1:6380") }), "standalone takes one address"},
		{"sentinel without master", redis(func(r *RedisConfig) { r.Mode = "sentinel" }), "redis.master_name: required with mode sentinel"},
		{"sentinel", redis(func(r *RedisConfig) { r.Mode, r.MasterName = "sentinel", "mymaster" }), ""},
		{"master name elsewhere", redis(func(r *RedisConfig) { r.MasterName = "mymaster" }), "redis.master_name"},
		{"cluster db", redis(func(r *RedisConfig) { r.Mode, r.DB = "cluster", 2 }), "redis.db: a Redis Cluster has database 0 only"},
		{"user without password file", redis(func(r *RedisConfig) { r.Username = "stirgate" }), "redis.password_file: required with a username"},
		{"timeout too long", redis(func(r *RedisConfig) { r.Timeout = 2 * time.Second }), "redis.timeout: 2s out of range"},
		{"tls files without tls", redis(func(r *RedisConfig) { r.TLS.CAFile = "ca.pem" }), "redis.tls.enabled: false"},
		{"cert without key", redis(func(r *RedisConfig) { r.TLS = TLSConfig{Enabled: true, CertFile: "c.pem"} }), "cert_file and key_file go together"},
		{"mode", redis(func(r *RedisConfig) { r.Mode = "replica" }), `redis.mode: "replica" is not one of`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Backend: "redis"}
	c.ApplyDefaults()
	if r := c.Redis; r.Mode != "standalone" || r.Timeout != DefaultRedisTimeout || r.DialTimeout != DefaultRedisDialTimeout || r.KeyPrefix != DefaultKeyPrefix {
		t.Fatalf("defaults: %+v", r)
	}
}
