package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/records"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/policy/store/redistest"
	"github.com/stirgate/stirgate/sip"
)

// describingRegisterer records the descriptions of what is registered:
// metric vectors appear in a Gather only once a label set is used, their
// descriptions at once.
type describingRegisterer struct {
	prometheus.Registerer
	labels map[string][]string // metric name -> variable labels
}

var descRe = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

func (d *describingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := descRe.FindStringSubmatch(desc.String()); m != nil {
			var labels []string
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, l)
				}
			}
			slices.Sort(labels)
			d.labels[m[1]] = labels
		}
	}
	return d.Registerer.Register(c)
}

func (d *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

// readmeMetrics parses the README's metrics table: metric name -> labels.
func readmeMetrics(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "| metric | labels |" {
			in = true
			continue
		}
		if !in || strings.HasPrefix(line, "|---") {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cols := strings.Split(strings.Trim(line, "|"), "|")
		names := regexp.MustCompile("`(stirgate_[a-z0-9_]+)`").FindAllStringSubmatch(cols[0], -1)
		// "rule; subject": one label list per metric of the row.
		perMetric := strings.Split(cols[1], ";")
		for i, n := range names {
			spec := perMetric[min(i, len(perMetric)-1)]
			spec, _, _ = strings.Cut(spec, "(")
			var labels []string
			for _, l := range strings.Split(spec, ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, l)
				}
			}
			slices.Sort(labels)
			out[n[1]] = labels
		}
	}
	if len(out) < 10 {
		t.Fatalf("found %d metrics in the README table: has its heading changed?", len(out))
	}
	return out
}

// TestREADMEMetricsAreRegistered: every metric the README's table lists is
// registered by serve's wiring with exactly those labels, and every
// stirgate_ metric registered is in the table.
func TestREADMEMetricsAreRegistered(t *testing.T) {
	cfg, err := configs.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*sip.RealmConfig{&cfg.SIP.Realms.Inside, &cfg.SIP.Realms.Outside} {
		for i := range r.Listen {
			r.Listen[i].Addr = "127.0.0.1:0"
		}
	}
	// With Redis as the state backend, so its metrics are registered too.
	cfg.State = store.Config{Backend: "redis", Redis: store.RedisConfig{Addrs: []string{redistest.Start(t).Addr}}}
	cfg.State.ApplyDefaults()
	reg := &describingRegisterer{Registerer: prometheus.NewRegistry(), labels: map[string][]string{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, replay, err := openState(cfg, reg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := newShared(log, reg, cfg.Verify.X5U, st, replay); err != nil {
		t.Fatal(err)
	}
	newReloadMetrics(reg)
	rs, err := records.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	newRecorder(rs, cfg.Records, &policy.ManagedLists{}, reg, log)
	edge, err := sip.New(cfg.SIP, sip.Chains{}, sip.Options{Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer edge.Close()

	documented := readmeMetrics(t)
	for name, labels := range documented {
		got, ok := reg.labels[name]
		if !ok {
			t.Errorf("README lists %s: not registered", name)
			continue
		}
		if !slices.Equal(got, labels) {
			t.Errorf("%s: README says labels %v, registered with %v", name, labels, got)
		}
	}
	for name := range reg.labels {
		if _, ok := documented[name]; !ok && strings.HasPrefix(name, "stirgate_") {
			t.Errorf("%s is registered but not in the README's metrics table", name)
		}
	}
}
