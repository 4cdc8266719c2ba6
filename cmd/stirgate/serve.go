package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/sip"
)

// applyRuntime sets the garbage collector from runtime: unless GOGC or
// GOMEMLIMIT are set in the environment (they win, as Go users expect).
// It is read at start only.
func applyRuntime(rc configs.RuntimeConfig, log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(rc.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" && rc.MemoryLimitMB > 0 {
		debug.SetMemoryLimit(int64(rc.MemoryLimitMB) << 20)
	}
	log.Debug("go runtime", "gc_percent", rc.GCPercent, "memory_limit_mb", rc.MemoryLimitMB, "env_gogc", os.Getenv("GOGC"), "env_gomemlimit", os.Getenv("GOMEMLIMIT"))
}

// loadConfig reads the file, or the embedded default when path is "".
func loadConfig(path string) (*configs.Config, error) {
	if path == "" {
		return configs.Default()
	}
	return configs.Load(path)
}

func configCheck(args []string) int {
	fs := newFlags("config check", "stirgate config check FILE...")
	if !parseFlags(fs, args, 1, -1) {
		return 2
	}
	rc := 0
	for _, f := range fs.Args() {
		if _, err := configs.Load(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			rc = 1
			continue
		}
		fmt.Printf("%s: ok\n", f)
	}
	return rc
}

func policyCheck(args []string) int {
	fs := newFlags("policy check", "stirgate policy check FILE...")
	if !parseFlags(fs, args, 1, -1) {
		return 2
	}
	rc := 0
	for _, f := range fs.Args() {
		if _, err := loadPolicy([]string{f}, func(p string) string { return p }, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			rc = 1
			continue
		}
		fmt.Printf("%s: ok\n", f)
	}
	return rc
}

// newLogger builds the process logger; level is a LevelVar so a reload can
// change it.
func newLogger(w io.Writer, cfg configs.LogConfig, level *slog.LevelVar) *slog.Logger {
	l, _ := configs.ParseLevel(cfg.Level) // validated
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// reloadMetrics are the all-or-nothing reload gauges (Caddy/Prometheus names).
type reloadMetrics struct {
	ok, ts prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) reloadMetrics {
	m := reloadMetrics{
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stirgate_config_last_reload_successful",
			Help: "1 if the last configuration load or reload succeeded, 0 if the old configuration is still serving.",
		}),
		ts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stirgate_config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration load or reload.",
		}),
	}
	reg.MustRegister(m.ok, m.ts)
	m.ok.Set(1)
	m.ts.SetToCurrentTime()
	return m
}

func serve(args []string) int {
	fs := newFlags("serve", "stirgate serve [--config FILE]")
	cfgPath := fs.String("config", "", "configuration file (default: the embedded configs/stirgate.yaml)")
	if !parseFlags(fs, args, 0, 0) {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var level slog.LevelVar
	log := newLogger(os.Stderr, cfg.Log, &level)
	slog.SetDefault(log)
	source := cfg.File
	if source == "" {
		source = configs.DefaultName
	}

	applyRuntime(cfg.Runtime, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloads := newReloadMetrics(reg)

	if err := ensureDevPKI(cfg, log); err != nil {
		log.Error("cannot create the development PKI", "err", err)
		return 2
	}
	sh := newShared(log, reg)
	gen, err := build(cfg, sh)
	if err != nil {
		log.Error("cannot build call pipeline", "err", err)
		return 2
	}
	edge, err := sip.New(cfg.SIP, gen.chains, sip.Options{Logger: log, Registry: reg})
	if err != nil {
		log.Error("cannot start SIP edge", "err", err)
		return 1
	}
	defer edge.Close()

	repo := &x5uRepository{}
	if err := repo.update(gen.signing, cfg.Attest.CertMaxAge); err != nil {
		log.Error("cannot publish the certificate chain", "err", err)
		return 2
	}
	token, err := readAdminToken(cfg.Resolve(cfg.Admin.TokenFile))
	if err != nil {
		log.Error("cannot read the admin token", "err", err)
		return 2
	}
	admin, err := startAdmin(log, cfg.Admin, token, edge, reg, repo)
	if err != nil {
		log.Error("cannot start admin HTTP", "err", err)
		return 1
	}
	defer admin.Close()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- edge.Serve(ctx) }()
	log.Info("stirgate started", "config", source, "admin", admin.Addr)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// Admins edit the files while calls flow: a change reloads like SIGHUP.
	watch := time.NewTicker(watchInterval)
	defer watch.Stop()
	seen := stamps(watchedFiles(*cfgPath, cfg))
	for {
		select {
		case <-watch.C:
			now := stamps(watchedFiles(*cfgPath, cfg))
			if !changed(seen, now) {
				continue
			}
			seen = now
			log.Info("configuration files changed: reloading")
			cfg = reload(log, &level, *cfgPath, cfg, edge, repo, sh, reloads)
			seen = stamps(watchedFiles(*cfgPath, cfg))
		case err := <-served:
			if err != nil {
				log.Error("SIP edge stopped", "err", err)
				return 1
			}
			return 0
		case s := <-sigs:
			if s == syscall.SIGHUP {
				cfg = reload(log, &level, *cfgPath, cfg, edge, repo, sh, reloads)
				seen = stamps(watchedFiles(*cfgPath, cfg))
				continue
			}
			log.Info("draining", "signal", s.String(), "deadline", cfg.Shutdown.DrainTimeout)
			dctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.DrainTimeout)
			err := edge.Drain(dctx)
			cancel()
			if err != nil {
				log.Warn("drain deadline reached", "err", err)
			} else {
				log.Info("drained")
			}
			stop()
			edge.Close()
			<-served
			log.Info("stopped")
			return 0
		}
	}
}

// reload loads, validates and builds a new generation; on any error the old
// one keeps serving. It returns the configuration now in force.
func reload(log *slog.Logger, level *slog.LevelVar, path string, old *configs.Config, edge *sip.Edge, repo *x5uRepository, sh *shared, m reloadMetrics) *configs.Config {
	fail := func(err error) *configs.Config {
		m.ok.Set(0)
		log.Error("config reload failed; previous configuration keeps serving", "err", err)
		return old
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return fail(err)
	}
	if err := ensureDevPKI(cfg, log); err != nil {
		return fail(err)
	}
	gen, err := build(cfg, sh)
	if err != nil {
		return fail(err)
	}
	if gen.signing != nil && repo.path() != "" && gen.signing.x5uPath != repo.path() {
		return fail(fmt.Errorf("attest.x5u: its path changed from %s to %s: the certificate repository needs a restart", repo.path(), gen.signing.x5uPath))
	}
	restart, err := edge.Apply(cfg.SIP, gen.chains)
	if err != nil {
		return fail(err)
	}
	// Key and certificate rotation: the new chain is published as the new
	// generation starts signing with the new key.
	if err := repo.update(gen.signing, cfg.Attest.CertMaxAge); err != nil {
		log.Error("certificate repository not updated", "err", err)
	}
	if cfg.Admin != old.Admin {
		restart = append(restart, "admin")
	}
	if cfg.Runtime != old.Runtime {
		restart = append(restart, "runtime")
	}
	l, _ := configs.ParseLevel(cfg.Log.Level)
	level.Set(l)
	if cfg.Log.Format != old.Log.Format {
		restart = append(restart, "log.format")
	}
	m.ok.Set(1)
	m.ts.SetToCurrentTime()
	if len(restart) > 0 {
		log.Warn("config reloaded; some changes need a restart and are not in force", "keys", strings.Join(restart, ","))
	} else {
		log.Info("config reloaded")
	}
	return cfg
}

// adminServer is the admin HTTP endpoint.
type adminServer struct {
	Addr string
	srv  *http.Server
	once sync.Once
}

func (a *adminServer) Close() {
	a.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = a.srv.Shutdown(ctx)
	})
}

func startAdmin(log *slog.Logger, cfg configs.AdminConfig, token string, edge *sip.Edge, reg *prometheus.Registry, repo *x5uRepository) (*adminServer, error) {
	if ap, err := netip.ParseAddrPort(cfg.Listen); err == nil && !ap.Addr().IsLoopback() {
		log.Warn("admin HTTP listens beyond loopback", "listen", cfg.Listen)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !edge.Ready() {
			http.Error(w, "not ready\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if p := repo.path(); p != "" {
		mux.Handle(p, repo)
	}
	if cfg.Pprof && token != "" {
		for path, h := range map[string]http.HandlerFunc{
			"/debug/pprof/": pprof.Index, "/debug/pprof/profile": pprof.Profile,
			"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/trace": pprof.Trace,
		} {
			mux.Handle(path, requireToken(token, h))
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", cfg.Listen, err)
	}
	a := &adminServer{
		Addr: ln.Addr().String(),
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
	}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin HTTP stopped", "err", err)
		}
	}()
	return a, nil
}
