package main

import (
	"context"
	"crypto"
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
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stirgate/stirgate/cmd/stirgate/admin"
	"github.com/stirgate/stirgate/cmd/stirgate/admin/console"
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
		if _, err := loadPolicy([]string{f}, func(p string) string { return p }, nil, nil); err != nil {
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
	st, replay, err := openState(cfg, reg, log)
	if err != nil {
		log.Error("cannot open the state backend", "err", err)
		return 2
	}
	defer st.Close()
	if cfg.State.Backend == "redis" {
		log.Info("state shared in Redis", "mode", cfg.State.Redis.Mode, "addrs", cfg.State.Redis.Addrs)
	}
	sh, err := newShared(log, reg, cfg.Verify.X5U, st, replay)
	if err != nil {
		log.Error("cannot build call pipeline", "err", err)
		return 2
	}
	gen, err := build(cfg, sh)
	if err != nil {
		log.Error("cannot build call pipeline", "err", err)
		return 2
	}
	rstore, err := openRecordStore(context.Background(), cfg)
	if err != nil {
		log.Error("cannot open the call-record database", "err", err)
		return 2
	}
	opts := sip.Options{Logger: log, Registry: reg}
	var rec *recorder
	if rstore != nil {
		defer rstore.Close()
		rec = newRecorder(rstore, cfg.Records, sh.managed, reg, log)
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := rec.loadLists(lctx)
		cancel()
		if err != nil {
			log.Error("cannot read the managed lists", "err", err)
			return 2
		}
		rctx, stopRecords := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { rec.run(rctx, 5*time.Second); close(done) }()
		// Runs after the edge closed (defers run last first): every record
		// of the last calls is queued by then.
		defer func() { stopRecords(); <-done }()
		opts.Records, opts.Ended = rec.add, rec.ended
		log.Info("call records", "backend", cfg.Records.Backend, "retention_days", cfg.Records.RetentionDays)
	}
	edge, err := sip.New(sipConfig(cfg), gen.chains, opts)
	if err != nil {
		log.Error("cannot start SIP edge", "err", err)
		return 1
	}
	defer edge.Close()
	repo := &x5uRepository{}
	gen.install(sh, repo)
	token, err := readAdminToken(cfg.Resolve(cfg.Admin.TokenFile))
	if err != nil {
		log.Error("cannot read the admin token", "err", err)
		return 2
	}
	api := &admin.API{Token: token, Records: rstore, Engine: sh.engine.Load, Explain: sh.explain, Log: log}
	adm, err := startAdmin(log, cfg.Admin, token, edge, reg, repo, api.Handler())
	if err != nil {
		log.Error("cannot start admin HTTP", "err", err)
		return 1
	}
	defer adm.Close()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- edge.Serve(ctx) }()
	log.Info("stirgate started", "config", source, "admin", adm.Addr)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	r := &reloader{log: log, level: &level, path: *cfgPath, cfg: cfg, watched: cfg, edge: edge, repo: repo, sh: sh, m: reloads}
	// Admins edit the files while calls flow: a change reloads like SIGHUP.
	watch := time.NewTicker(watchInterval)
	defer watch.Stop()
	// The list of files is made at each (re)load, not at each tick: making
	// it reads the policy files and their prompts.
	files := r.watchedFiles()
	seen := stamps(files)
	for {
		select {
		case <-watch.C:
			if !changed(seen, stamps(files)) {
				continue
			}
			log.Info("configuration files changed: reloading")
			_ = r.reload() // logged; the old configuration keeps serving
			files = r.watchedFiles()
			seen = stamps(files)
		case err := <-served:
			if err != nil {
				log.Error("SIP edge stopped", "err", err)
				return 1
			}
			return 0
		case s := <-sigs:
			if s == syscall.SIGHUP {
				_ = r.reload()
				files = r.watchedFiles()
				seen = stamps(files)
				continue
			}
			log.Info("draining", "signal", s.String(), "deadline", r.cfg.Shutdown.DrainTimeout)
			dctx, cancel := context.WithTimeout(context.Background(), r.cfg.Shutdown.DrainTimeout)
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

// reloader holds the configuration in force and replaces it all or
// nothing (SIGHUP or a changed file).
type reloader struct {
	log   *slog.Logger
	level *slog.LevelVar
	path  string // --config; "": the embedded default
	cfg   *configs.Config
	// watched is the configuration whose files are watched: the one in
	// force, or the last one that loaded but was refused (so that fixing
	// the file it names, a broken CRL say, reloads).
	watched *configs.Config
	edge    *sip.Edge
	repo    *x5uRepository
	sh      *shared
	m       reloadMetrics
}

// watchedFiles are the files whose change reloads the configuration.
func (r *reloader) watchedFiles() []string { return watchedFiles(r.path, r.watched) }

// reload loads and validates the configuration, builds the new generation
// and prepares the edge's; only when all of that succeeded does anything
// change (fetch policy, published chain, edge, log level, gauges). On an
// error the old generation keeps serving, untouched, and the error is
// logged and returned.
func (r *reloader) reload() error {
	cfg, gen, upd, err := r.prepare()
	if cfg != nil {
		r.watched = cfg
	}
	if err != nil {
		r.m.ok.Set(0)
		r.log.Error("config reload failed; previous configuration keeps serving", "err", err)
		return err
	}
	// Accepted: from here on nothing can fail. The shared side goes first
	// so the new chains meet their own x5u policy from their first call.
	gen.install(r.sh, r.repo)
	upd.Install()
	l, _ := configs.ParseLevel(cfg.Log.Level) // validated
	r.level.Set(l)
	restart := upd.NeedRestart
	if cfg.Admin != r.cfg.Admin {
		restart = append(restart, "admin")
	}
	if cfg.Runtime != r.cfg.Runtime {
		restart = append(restart, "runtime")
	}
	if !reflect.DeepEqual(cfg.State, r.cfg.State) {
		restart = append(restart, "state")
	}
	if cfg.Records != r.cfg.Records {
		restart = append(restart, "records")
	}
	if cfg.Log.Format != r.cfg.Log.Format {
		restart = append(restart, "log.format")
	}
	r.cfg = cfg
	r.m.ok.Set(1)
	r.m.ts.SetToCurrentTime()
	if len(restart) > 0 {
		r.log.Warn("config reloaded; some changes need a restart and are not in force", "keys", strings.Join(restart, ","))
	} else {
		r.log.Info("config reloaded")
	}
	return nil
}

// prepare is every step of a reload that can fail. Its only effect outside
// what it returns is the development PKI, created as serve would. The
// configuration is returned when it loaded, even if a later step failed.
func (r *reloader) prepare() (*configs.Config, *generation, *sip.Update, error) {
	cfg, err := loadConfig(r.path)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := ensureDevPKI(cfg, r.log); err != nil {
		return cfg, nil, nil, err
	}
	gen, err := build(cfg, r.sh)
	if err != nil {
		return cfg, nil, nil, err
	}
	if err := checkRotation(r.repo.signing(), gen.signing); err != nil {
		return cfg, nil, nil, err
	}
	upd, err := r.edge.Prepare(sipConfig(cfg), gen.chains)
	if err != nil {
		return cfg, nil, nil, err
	}
	return cfg, gen, upd, nil
}

// checkRotation refuses a new signing key published at the x5u URL of the
// old one: verifiers cache a chain by its URL (up to attest.cert_max_age),
// and those that hold the old one would reject every new signature. A new
// key needs a new x5u URL; a renewed certificate for the same key may keep
// it.
func checkRotation(old, next *signing) error {
	if old == nil || next == nil || old.x5uPath != next.x5uPath {
		return nil
	}
	if k, ok := next.key.(interface{ Equal(crypto.PublicKey) bool }); ok && k.Equal(old.key) {
		return nil
	}
	return fmt.Errorf("attest.x5u: the signing key changed but the x5u URL did not: verifiers that cached the old certificate (up to attest.cert_max_age, %s) would reject every new signature; publish the new certificate under a new x5u URL (the old one stays served)", old.maxAge)
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

// startAdmin serves health, metrics, the x5u repository, pprof (with the
// token) and api (/api/v1, which checks the token itself).
func startAdmin(log *slog.Logger, cfg configs.AdminConfig, token string, edge *sip.Edge, reg *prometheus.Registry, repo *x5uRepository, api http.Handler) (*adminServer, error) {
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
	mux.Handle("/", repo) // every other path: the x5u chains published (404 for the rest)
	if api != nil {
		mux.Handle("/api/v1/", api)
		// The console's page holds nothing secret: it asks for the token
		// and sends it with every API call.
		mux.Handle(console.Prefix, console.Handler())
	}
	if cfg.Pprof && token != "" {
		for path, h := range map[string]http.HandlerFunc{
			"/debug/pprof/": pprof.Index, "/debug/pprof/profile": pprof.Profile,
			"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/trace": pprof.Trace,
		} {
			mux.Handle(path, admin.RequireToken(token, h))
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

// sipConfig is cfg's sip: section with its TLS files resolved against the
// configuration file's directory.
func sipConfig(cfg *configs.Config) sip.Config {
	return cfg.SIP.WithFilesResolved(cfg.Resolve)
}
