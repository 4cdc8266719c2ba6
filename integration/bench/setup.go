package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/stirgate/stirgate/certs"
)

const loopback = "127.0.0.1"

// debs are the Debian packages the bench needs, and a file each installs.
var debs = []struct{ pkg, file string }{
	{"sip-tester", "sipp"},
	{"kamailio", "kamailio"},
	{"kamailio-secsipid-modules", "secsipid.so"},
	{"kamailio-tls-modules", "tls.so"}, // Kamailio on the transport comparison's TLS ramp
	{"secsipidx", "secsipidx"},         // verifies the sign-mode callee's sample
	{"redis-server", "redis-server"},   // the state comparison's Redis
}

// ensureTools installs the missing packages (root with apt-get only) and
// fails when a tool is still missing.
func ensureTools() error {
	var missing []string
	for _, d := range debs {
		if exec.Command("dpkg", "-s", d.pkg).Run() != nil {
			missing = append(missing, d.pkg)
		}
	}
	if len(missing) > 0 {
		if _, err := exec.LookPath("apt-get"); err != nil || os.Getuid() != 0 {
			return fmt.Errorf("missing Debian packages %s: install them (apt-get install %s) or run the bench as root", strings.Join(missing, ", "), strings.Join(missing, " "))
		}
		log.Printf("installing %s", strings.Join(missing, " "))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get update: %w\n%s", err, out)
		}
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-qq"}, missing...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(missing, " "), err, out)
		}
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		return fmt.Errorf("sipp not found: %w", err)
	}
	if _, err := kamailioBinary(); err != nil {
		return err
	}
	if _, err := secsipidx(); err != nil {
		return err
	}
	if _, err := kamailioModulesDir(); err != nil {
		return err
	}
	return nil
}

func kamailioBinary() (string, error) {
	for _, p := range []string{"kamailio", "/usr/sbin/kamailio"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("kamailio not found (Debian package kamailio)")
}

// kamailioModulesDir is the directory that holds tm.so, secsipid.so and
// tls.so.
func kamailioModulesDir() (string, error) {
	globs := []string{"/usr/lib/*/kamailio/modules", "/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules"}
	for _, g := range globs {
		dirs, _ := filepath.Glob(g)
		for _, d := range dirs {
			if fileExists(filepath.Join(d, "tm.so")) && fileExists(filepath.Join(d, "secsipid.so")) && fileExists(filepath.Join(d, "tls.so")) {
				return d, nil
			}
		}
	}
	return "", errors.New("kamailio modules tm.so, secsipid.so and tls.so not found (Debian packages kamailio, kamailio-secsipid-modules, kamailio-tls-modules)")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// env is what every step shares: binaries, PKI, the certificate server.
type env struct {
	work       string
	root       string // module root (scenario files)
	stirgate   string // built binary
	kamailio   string
	modulesDir string
	pki        string // stirgate certs init output
	x5u        string // URL of sp.pem on the certificate server
	kamKey     string // the same SP key as SEC1 PEM for libsecsipid
	certPort   int
	certSrv    *http.Server
	callers    string       // SIPp injection file of uac_callers.xml
	redis      *redisServer // during the state comparison
	policy     string       // policy of the state comparison's stirgate
	records    string       // stirgate's records.backend
}

func setup(ctx context.Context, work string) (*env, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	e := &env{work: work, root: root, pki: filepath.Join(work, "pki")}
	if e.kamailio, err = kamailioBinary(); err != nil {
		return nil, err
	}
	if e.modulesDir, err = kamailioModulesDir(); err != nil {
		return nil, err
	}
	e.stirgate = filepath.Join(work, "stirgate")
	log.Printf("building stirgate")
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(bctx, "go", "build", "-o", e.stirgate, "./cmd/stirgate")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/stirgate: %w\n%s", err, out)
	}

	// The certificate server first: the PKI embeds its URL.
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return nil, fmt.Errorf("certificate server: %w", err)
	}
	e.certPort = ln.Addr().(*net.TCPAddr).Port
	base := fmt.Sprintf("http://%s/certs/", ln.Addr())
	e.x5u = base + "sp.pem"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /certs/sp.pem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Header().Set("Cache-Control", "max-age=3600")
		http.ServeFile(w, r, filepath.Join(e.pki, "sp.pem"))
	})
	e.certSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go e.certSrv.Serve(ln)

	out, err := exec.CommandContext(bctx, e.stirgate, "certs", "init", "--dir", e.pki, "--x5u-base", base).CombinedOutput()
	if err != nil {
		e.close()
		return nil, fmt.Errorf("stirgate certs init: %w\n%s", err, out)
	}
	// libsecsipid reads SEC1 ("EC PRIVATE KEY"); certs init writes PKCS#8.
	// Same key, other encoding.
	s, err := certs.LoadSigner(filepath.Join(e.pki, "sp.key"), filepath.Join(e.pki, "sp.pem"), time.Now())
	if err != nil {
		e.close()
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(s.Key)
	if err != nil {
		e.close()
		return nil, fmt.Errorf("SEC1 key: %w", err)
	}
	e.kamKey = filepath.Join(work, "kamailio-sp.key")
	if err := os.WriteFile(e.kamKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		e.close()
		return nil, fmt.Errorf("SEC1 key: %w", err)
	}
	return e, nil
}

func (e *env) close() {
	if e.certSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = e.certSrv.Shutdown(ctx)
	}
}

func (e *env) scenario(name string) string {
	return filepath.Join(e.root, "integration", "sipp", name)
}

// benchScenario is a SIPp scenario of the bench's own (integration/bench).
func (e *env) benchScenario(name string) string {
	return filepath.Join(e.root, "integration", "bench", name)
}

// Ports come from below the kernel's ephemeral range (32768-60999 on
// Linux): a port the bench picked, released and hands to a proxy or SIPp
// later cannot meanwhile be given to some process's bind(":0").
const (
	portLow  = 20000
	portHigh = 32000
)

// freeUDPPort returns a loopback port that was free (UDP and TCP) a moment
// ago.
func freeUDPPort() (int, error) {
	ps, err := freeUDPPorts(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// freeUDPPorts returns n distinct loopback ports, each free for UDP and TCP.
func freeUDPPorts(n int) ([]int, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		port := portLow + rand.IntN(portHigh-portLow)
		u, err := net.ListenPacket("udp", hostPort(port))
		if err != nil {
			continue
		}
		t, err := net.Listen("tcp", hostPort(port))
		if err != nil {
			u.Close()
			continue
		}
		held = append(held, u, t)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("free port: only %d of %d free in %d..%d", len(ports), n, portLow, portHigh)
	}
	return ports, nil
}

// machine describes where the numbers were measured.
type machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryMB int    `json:"memory_mb"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Kamailio string `json:"kamailio"`
	SIPp     string `json:"sipp"`
	Secsipid string `json:"libsecsipid"`
	Redis    string `json:"redis"`
}

func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.MemoryMB = kb / 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Kamailio = firstLine(commandOutput("kamailio", "-v"))
	m.SIPp = firstLine(commandOutput("sipp", "-v"))
	m.Redis = firstLine(commandOutput("redis-server", "--version"))
	m.Secsipid = strings.TrimSpace(commandOutput("dpkg-query", "-W", "-f", "${Version}", "libsecsipid1"))
	return m
}

func commandOutput(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path, err := exec.LookPath(name)
	if err != nil && name == "kamailio" {
		path, err = kamailioBinary()
	}
	if err != nil {
		return ""
	}
	out, _ := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }
