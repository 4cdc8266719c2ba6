// Package pgtest starts a real PostgreSQL server for tests: initdb into a
// temporary directory (trust authentication), postgres on 127.0.0.1 and a
// free port with its unix socket in that directory, stopped by its PID when
// the test ends. It uses Debian's server (/usr/lib/postgresql/*/bin) or the
// one on PATH; without one the test is skipped, or fails when CI=true.
//
// initdb and postgres refuse to run as root, so when the test runs as root
// the server runs as the postgres user (nobody when there is none), in a
// directory that user owns.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the role initdb creates; every connection uses it.
const Superuser = "pgtest"

// Server is a running PostgreSQL.
type Server struct {
	Host string // 127.0.0.1
	Port int
	dbs  atomic.Int64 // databases NewDatabase made
}

// DSN is the connection string of database db on s.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.Host, s.Port, Superuser, db)
}

// NewDatabase creates an empty database on s and returns its DSN; options
// are CREATE DATABASE options, e.g. "TEMPLATE template0 LOCALE_PROVIDER icu
// ICU_LOCALE 'en-US'" for a locale whose order is not the bytes'.
func (s *Server) NewDatabase(tb testing.TB, options ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	if _, err := conn.Exec(ctx, strings.Join(append([]string{"CREATE DATABASE", name}, options...), " ")); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return s.DSN(name)
}

// Start starts a PostgreSQL server for tb, stopped when tb ends. settings
// are name=value server settings (postgres -c), e.g. "fsync=off" for tests
// that need no durability; without them the server runs with its defaults.
func Start(tb testing.TB, settings ...string) *Server {
	tb.Helper()
	bin, err := binDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("pgtest: %v (CI needs it: install Debian's postgresql)", err)
		}
		tb.Skipf("pgtest: %v", err)
	}
	base, cred := workDir(tb)
	data, sock := filepath.Join(base, "data"), filepath.Join(base, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if cred != nil {
		if err := os.Chown(sock, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
	}
	initdb := command(filepath.Join(bin, "initdb"), base, cred,
		"-D", data, "-U", Superuser, "--auth=trust", "--no-sync", "--locale=C", "--encoding=UTF8")
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	// The free port can be taken between finding it and the bind: then
	// postgres exits and another port is tried.
	var last string
	for range 5 {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
		s := &Server{Host: "127.0.0.1", Port: port}
		args := []string{"-D", data, "-k", sock, "-h", s.Host, "-p", strconv.Itoa(port)}
		for _, kv := range settings {
			args = append(args, "-c", kv)
		}
		// The log goes to a file, not a pipe: a pipe that a killed
		// server's children still hold would keep Wait from returning.
		log, err := os.Create(filepath.Join(base, fmt.Sprintf("postgres-%d.log", port)))
		if err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
		p := command(filepath.Join(bin, "postgres"), base, cred, args...)
		p.Stdout, p.Stderr = log, log
		err = p.Start()
		_ = log.Close() // the server has its own copy
		if err != nil {
			tb.Fatalf("pgtest: start postgres: %v", err)
		}
		logText := func() string { b, _ := os.ReadFile(log.Name()); return string(b) }
		exited := make(chan struct{})
		go func() { _ = p.Wait(); close(exited) }()
		err = waitReady(s, exited)
		if err == nil {
			tb.Cleanup(func() { stop(tb, p, exited, logText) })
			return s
		}
		stop(tb, p, exited, logText)
		last = fmt.Sprintf("%v\n%s", err, logText())
		if !strings.Contains(logText(), "could not bind") {
			break
		}
	}
	tb.Fatalf("pgtest: postgres did not start: %s", last)
	return nil
}

// binDir is the directory of initdb and postgres: the newest Debian
// server, else the one on PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return "", errors.New("no PostgreSQL server: initdb is neither in /usr/lib/postgresql/*/bin nor on PATH")
	}
	d := filepath.Dir(initdb)
	if !executable(filepath.Join(d, "postgres")) {
		return "", fmt.Errorf("no postgres beside %s", initdb)
	}
	return d, nil
}

// version is the major version in /usr/lib/postgresql/<version>/bin.
func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// workDir is an empty directory for the server, removed when tb ends, and
// the credential to run the server with (nil: as ourselves). As root it is
// a directory of its own that the postgres user owns: t.TempDir's parent
// is private to root.
func workDir(tb testing.TB) (string, *syscall.Credential) {
	tb.Helper()
	if os.Geteuid() != 0 {
		return tb.TempDir(), nil
	}
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("pgtest: running as root and no postgres or nobody user to run the server as: %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return dir, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// command runs path in dir (the server's user may not enter ours) with a
// plain C locale, as cred when it is set.
func command(path, dir string, cred *syscall.Credential, args ...string) *exec.Cmd {
	c := exec.Command(path, args...)
	c.Dir = dir
	env := []string{"LC_ALL=C", "LANG=C"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "PATH" || k == "TZ" {
			env = append(env, kv)
		}
	}
	c.Env = env
	if cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits (at most a minute) until s accepts a connection, or the
// server exits.
func waitReady(s *Server, exited <-chan struct{}) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("postgres exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after a minute: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks postgres for a fast shutdown (SIGINT: sessions are ended) and
// kills it if it has not exited within 30 s.
func stop(tb testing.TB, p *exec.Cmd, exited <-chan struct{}, log func() string) {
	_ = p.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = p.Process.Kill()
		<-exited
		tb.Errorf("pgtest: postgres (pid %d) ignored a fast shutdown for 30 s and was killed; its log:\n%s", p.Process.Pid, log())
	}
}
