// Package configs loads stirgate's YAML files strictly: unknown keys are
// errors, and every error names file, line and key. It is the only package
// that imports the YAML library. The example files next to it are the
// documentation of record; stirgate.yaml is also the embedded default.
package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
	"github.com/stirgate/stirgate/verify"
)

//go:embed stirgate.yaml
var defaultYAML []byte

// DefaultName is how errors and logs name the embedded default file.
const DefaultName = "stirgate.yaml (embedded default)"

// Config is the whole of stirgate.yaml.
type Config struct {
	// Mode is development (a test PKI may be created) or production.
	Mode     string          `yaml:"mode"`
	Log      LogConfig       `yaml:"log"`
	Admin    AdminConfig     `yaml:"admin"`
	Shutdown ShutdownConfig  `yaml:"shutdown"`
	Runtime  RuntimeConfig   `yaml:"runtime"`
	SIP      sip.Config      `yaml:"sip"`
	Attest   attest.Config   `yaml:"attest"`
	Verify   verify.Config   `yaml:"verify"`
	Policy   policy.Settings `yaml:"policy"`
	// State is where policy state and the replay cache live: this node's
	// memory, or Redis shared by several nodes.
	State store.Config `yaml:"state"`
	// Records is the call-record database (traceback, the admin API's
	// lists and audit trail).
	Records RecordsConfig `yaml:"records"`

	// File is the path the configuration was read from ("" when embedded);
	// relative paths in it resolve against its directory.
	File string `yaml:"-"`
}

// RecordsConfig is the `records:` section.
type RecordsConfig struct {
	Backend string `yaml:"backend"` // sqlite | postgres | none
	// Path is the SQLite file; DSN the PostgreSQL connection string (a
	// password goes in a passfile named by the DSN, never here).
	Path string `yaml:"path"`
	DSN  string `yaml:"dsn"`
	// RetentionDays: records older than this are pruned (hourly).
	RetentionDays int `yaml:"retention_days"`
	// Queue is how many records wait for the writer before new ones are
	// dropped (and counted).
	Queue int `yaml:"queue"`
}

// LogConfig is the `log:` section.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// AdminConfig is the `admin:` section.
type AdminConfig struct {
	Listen string `yaml:"listen"`
	// Pprof serves Go's /debug/pprof/ profiles on the admin listener, to
	// requests that carry the token ("Authorization: Bearer <token>").
	Pprof bool `yaml:"pprof"`
	// TokenFile holds the admin token (one line, not readable by group or
	// others). Needed by everything on the admin listener beyond health,
	// metrics and the x5u repository.
	TokenFile string `yaml:"token_file"`
}

// RuntimeConfig is the `runtime:` section: the Go garbage collector. The
// environment variables GOGC and GOMEMLIMIT, when set, win over it.
type RuntimeConfig struct {
	// GCPercent is GOGC: the heap may grow this many percent over the live
	// heap before a collection. SIP messages are short-lived garbage; 200
	// halves the collections of Go's 100 for about 1.5x the heap.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitMB is GOMEMLIMIT in MiB (0: none): the collector works
	// harder as the heap nears it, so a flood cannot grow it without bound.
	MemoryLimitMB int `yaml:"memory_limit_mb"`
}

// DefaultGCPercent is runtime.gc_percent when absent.
const DefaultGCPercent = 200

// ShutdownConfig is the `shutdown:` section.
type ShutdownConfig struct {
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// ApplyDefaults fills absent values.
func (c *Config) ApplyDefaults() {
	if c.Mode == "" {
		c.Mode = "production"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = "127.0.0.1:9060"
	}
	if c.Shutdown.DrainTimeout == 0 {
		c.Shutdown.DrainTimeout = 30 * time.Second
	}
	if c.Runtime.GCPercent == 0 {
		c.Runtime.GCPercent = DefaultGCPercent
	}
	c.SIP.ApplyDefaults()
	c.Attest.ApplyDefaults()
	c.Verify.ApplyDefaults()
	c.State.ApplyDefaults()
	if c.Records.Backend == "" {
		c.Records.Backend = "sqlite"
	}
	if c.Records.Path == "" {
		c.Records.Path = "stirgate-records.db"
	}
	if c.Records.RetentionDays == 0 {
		c.Records.RetentionDays = 90
	}
	if c.Records.Queue == 0 {
		c.Records.Queue = 20000
	}
}

// Production reports whether the configuration is for production.
func (c *Config) Production() bool { return c.Mode != "development" }

// Validate checks every section; errors start with their YAML key path.
func (c *Config) Validate() error {
	var errs []error
	if c.Mode != "development" && c.Mode != "production" {
		errs = append(errs, fmt.Errorf("mode: %q is not one of development, production", c.Mode))
	}
	if c.Production() && c.Attest.DevPKI {
		errs = append(errs, errors.New("attest.dev_pki: a test PKI is never created in production mode"))
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %w", err))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: %q is not one of text, json", c.Log.Format))
	}
	if _, err := netip.ParseAddrPort(c.Admin.Listen); err != nil {
		errs = append(errs, fmt.Errorf("admin.listen: %q is not ip:port", c.Admin.Listen))
	}
	if c.Admin.Pprof && c.Admin.TokenFile == "" {
		errs = append(errs, errors.New("admin.pprof: needs admin.token_file: profiles are served only to requests with the admin token"))
	}
	if c.Runtime.GCPercent < 25 || c.Runtime.GCPercent > 2000 {
		errs = append(errs, fmt.Errorf("runtime.gc_percent: %d out of range 25..2000", c.Runtime.GCPercent))
	}
	if c.Runtime.MemoryLimitMB < 0 || (c.Runtime.MemoryLimitMB > 0 && c.Runtime.MemoryLimitMB < 64) {
		errs = append(errs, fmt.Errorf("runtime.memory_limit_mb: %d: want 0 (none) or at least 64", c.Runtime.MemoryLimitMB))
	}
	if c.Shutdown.DrainTimeout <= 0 || c.Shutdown.DrainTimeout > time.Hour {
		errs = append(errs, fmt.Errorf("shutdown.drain_timeout: %s: want more than 0, at most 1h", c.Shutdown.DrainTimeout))
	}
	if err := c.SIP.Validate(); err != nil {
		errs = append(errs, prefix("sip.", err)...)
	}
	if err := c.Attest.Validate(); err != nil {
		errs = append(errs, prefix("attest.", err)...)
	}
	if err := c.Verify.Validate(); err != nil {
		errs = append(errs, prefix("verify.", err)...)
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, prefix("policy.", err)...)
	}
	if err := c.State.Validate(); err != nil {
		errs = append(errs, prefix("state.", err)...)
	}
	switch r := c.Records; {
	case r.Backend != "sqlite" && r.Backend != "postgres" && r.Backend != "none":
		errs = append(errs, fmt.Errorf("records.backend: %q is not one of sqlite, postgres, none", r.Backend))
	case r.Backend == "postgres" && r.DSN == "":
		errs = append(errs, errors.New("records.dsn: required for the postgres backend"))
	}
	if c.Records.RetentionDays < 1 || c.Records.RetentionDays > 3650 {
		errs = append(errs, fmt.Errorf("records.retention_days: %d out of range 1..3650", c.Records.RetentionDays))
	}
	if c.Records.Queue < 1 || c.Records.Queue > 1000000 {
		errs = append(errs, fmt.Errorf("records.queue: %d out of range 1..1000000", c.Records.Queue))
	}
	return errors.Join(errs...)
}

// ParseLevel reads a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
	}
	return l, nil
}

// Resolve makes a path from the configuration absolute: relative paths
// resolve against the directory of the config file (or the working directory
// for the embedded default).
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// Default returns the embedded default configuration.
func Default() (*Config, error) {
	c := &Config{}
	if err := Decode(DefaultName, defaultYAML, c); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads, decodes and validates the main configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{}
	if err := Decode(path, data, c); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.File = abs
	return c, nil
}

// LoadFile reads, decodes and validates one YAML file into out (a policy
// file, for instance).
func LoadFile(path string, out Section) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return Decode(path, data, out)
}

// Section is what Decode fills: a type with defaults and validation.
type Section interface {
	ApplyDefaults()
	Validate() error
}

// Decode decodes data strictly into out, applies defaults and validates. Every
// error is "file:line: key: message", one per line.
func Decode(file string, data []byte, out Section) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &Error{File: file, Problems: []Problem{yamlSyntaxProblem(err)}}
	}
	idx := indexKeys(&root)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	e := &Error{File: file}
	reported := map[string]bool{}
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return &Error{File: file, Problems: []Problem{yamlSyntaxProblem(err)}}
		}
		// yaml.v3 decodes the rest after a type error: go on and validate
		// it too, so one run reports every problem of the file.
		for _, msg := range te.Errors {
			p := typeProblem(msg, idx)
			reported[p.Key] = true
			e.Problems = append(e.Problems, p)
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		e.Problems = append(e.Problems, Problem{Line: extra.Line, Msg: "only one YAML document is allowed"})
	}
	if s, ok := out.(interface{ SetSource(path string) }); ok {
		s.SetSource(file) // relative paths inside it resolve against its directory
	}
	out.ApplyDefaults()
	for _, oe := range overridden(out, idx.zeros) {
		p := validationProblem(oe.Error(), idx)
		reported[p.Key] = true
		e.Problems = append(e.Problems, p)
	}
	if err := out.Validate(); err != nil {
		for _, ve := range flatten(err) {
			if p := validationProblem(ve.Error(), idx); !reported[p.Key] {
				e.Problems = append(e.Problems, p)
			}
		}
	}
	if len(e.Problems) > 0 {
		return e
	}
	return nil
}

// Problem is one error at one place of a file.
type Problem struct {
	Line int    // 0 when unknown
	Key  string // dotted key path, "" when unknown
	Msg  string
}

// Error lists every problem found in one file.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		if p.Key != "" {
			b.WriteString(p.Key + ": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// keyIndex maps key paths to lines and lines to key paths, and lists the
// paths whose value is a zero (isZeroScalar).
type keyIndex struct {
	lineOf map[string]int
	keyAt  map[int]string
	zeros  []string
}

func indexKeys(root *yaml.Node) keyIndex {
	idx := keyIndex{lineOf: map[string]int{}, keyAt: map[int]string{}}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				idx.lineOf[p] = k.Line
				if _, seen := idx.keyAt[k.Line]; !seen {
					idx.keyAt[k.Line] = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				idx.lineOf[p] = c.Line
				if _, seen := idx.keyAt[c.Line]; !seen {
					idx.keyAt[c.Line] = p
				}
				walk(c, p)
			}
		case yaml.ScalarNode:
			if isZeroScalar(n) {
				idx.zeros = append(idx.zeros, path)
			}
		}
	}
	walk(root, "")
	return idx
}

// line finds the line of a key path, or of its nearest present parent
// (a missing required key is reported where its section starts).
func (idx keyIndex) line(path string) int {
	for p := path; p != ""; {
		if l, ok := idx.lineOf[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

var (
	lineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// yamlParserProblems are the messages of yaml.v3's parser (not scanner)
// errors: for those v3.0.1 reports a 0-based line (its decode.go fail()).
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func yamlSyntaxProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			l++
		}
		return Problem{Line: l, Msg: "syntax error: " + m[2]}
	}
	return Problem{Msg: "syntax error: " + msg}
}

func typeProblem(msg string, idx keyIndex) Problem {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Msg: msg}
	}
	l, _ := strconv.Atoi(m[1])
	p := Problem{Line: l, Key: idx.keyAt[l], Msg: m[2]}
	if u := unknownRe.FindStringSubmatch(m[2]); u != nil {
		p.Msg = "unknown key " + strconv.Quote(u[1])
	}
	return p
}

// validationProblem splits "key.path: message" and finds the key's line.
func validationProblem(msg string, idx keyIndex) Problem {
	key, rest, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(key, " \"") {
		return Problem{Msg: msg}
	}
	return Problem{Line: idx.line(key), Key: key, Msg: rest}
}

// flatten unwraps errors.Join trees into their leaves.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// prefix puts a key path in front of every joined error.
func prefix(p string, err error) []error {
	var out []error
	for _, e := range flatten(err) {
		out = append(out, fmt.Errorf("%s%w", p, e))
	}
	return out
}
