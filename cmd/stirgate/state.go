package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/verify"
)

// openState opens what cfg.state names: the policy store and the
// verifier's replay cache, in this process (memory) or in Redis, shared by
// every node that serves one address. It is read at start only. A Redis
// that cannot be reached at start is not fatal: the node serves with every
// stateful rule's on_store_error and connects as soon as Redis answers.
func openState(cfg *configs.Config, reg prometheus.Registerer, log *slog.Logger) (store.Store, verify.ReplayStore, error) {
	sc := cfg.State
	if sc.Backend != "redis" {
		return store.NewMemory(), verify.NewMemoryReplay(), nil
	}
	o, err := redisOptions(cfg, reg)
	if err != nil {
		return nil, nil, err
	}
	o.Background, o.Log = true, log
	ctx, cancel := context.WithTimeout(context.Background(), sc.Redis.DialTimeout)
	defer cancel()
	r, err := store.NewRedis(ctx, o)
	if err != nil {
		return nil, nil, fmt.Errorf("state.redis: %w", err)
	}
	return r, onceReplay{r.Once()}, nil
}

// redisOptions turns state.redis into the store's options: the password
// read from its file, TLS material loaded, paths resolved.
func redisOptions(cfg *configs.Config, reg prometheus.Registerer) (store.RedisOptions, error) {
	rc := cfg.State.Redis
	o := store.RedisOptions{
		Mode: rc.Mode, Addrs: rc.Addrs, MasterName: rc.MasterName, Username: rc.Username, DB: rc.DB,
		Timeout: rc.Timeout, DialTimeout: rc.DialTimeout, KeyPrefix: rc.KeyPrefix, Registerer: reg,
	}
	if rc.PasswordFile != "" {
		pw, err := readSecretFile("state.redis.password_file", cfg.Resolve(rc.PasswordFile), 1)
		if err != nil {
			return o, err
		}
		o.Password = pw
	}
	if t := rc.TLS; t.Enabled {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CAFile != "" {
			pem, err := os.ReadFile(cfg.Resolve(t.CAFile))
			if err != nil {
				return o, fmt.Errorf("state.redis.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("state.redis.tls.ca_file: %s holds no PEM certificate", t.CAFile)
			}
		}
		if t.CertFile != "" {
			pair, err := tls.LoadX509KeyPair(cfg.Resolve(t.CertFile), cfg.Resolve(t.KeyFile))
			if err != nil {
				return o, fmt.Errorf("state.redis.tls.cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		o.TLS = tc
	}
	return o, nil
}

// onceReplay is the verifier's replay cache on the shared store: a
// PASSporT accepted by one node is a replay on every other.
type onceReplay struct{ once store.Once }

func replayKeyName(k verify.ReplayKey) string { return "replay:" + hex.EncodeToString(k[:]) }

func (o onceReplay) Seen(ctx context.Context, k verify.ReplayKey, now time.Time) (bool, error) {
	return o.once.Seen(ctx, replayKeyName(k), now)
}

func (o onceReplay) Claim(ctx context.Context, k verify.ReplayKey, ttl time.Duration, now time.Time) (bool, error) {
	return o.once.Claim(ctx, replayKeyName(k), ttl, now)
}
