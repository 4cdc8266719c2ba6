package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/stirgate/stirgate/cmd/stirgate/admin/console"
)

// The web console tests drive Debian's Chromium (package chromium) headless
// through the DevTools protocol (chromedp, over a pipe: no debugging port),
// on loopback only. Screenshots go to $STIRGATE_SCREENSHOTS (default: the
// test's temp dir).

// requireChromium returns Chromium's path, or skips the test (fails it
// under CI=true, where a missing browser is a broken setup).
func requireChromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("STIRGATE_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found (CI=true): install the Debian package chromium")
	}
	t.Skip("chromium not found; install the Debian package chromium")
	return ""
}

// ui is one headless Chromium tab driven by a test.
type ui struct {
	t         *testing.T
	ctx       context.Context
	shots     string
	downloads string // where the browser saves files

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// browserBound caps a whole browser session; each step has its own bound.
const browserBound = 4 * time.Minute

// startUI starts Chromium with a fresh profile; the browser is stopped
// (its process killed by chromedp, by PID) when the test ends.
func startUI(t *testing.T) *ui {
	t.Helper()
	bin := requireChromium(t)
	shots := os.Getenv("STIRGATE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatalf("screenshots dir: %v", err)
	}
	base, cancelBase := context.WithTimeout(context.Background(), browserBound)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(base,
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// The machine's network is closed: Chromium must not try to reach
		// anything but the loopback pages it is given.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	u := &ui{t: t, ctx: ctx, shots: shots, downloads: t.TempDir()}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelBase()
	})
	// Start the browser, then listen to the page's console from the start.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			u.mu.Lock()
			u.messages = append(u.messages, m)
			u.mu.Unlock()
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior:     browser.SetDownloadBehaviorBehaviorAllow,
			DownloadPath: u.downloads,
		})
		return err
	})); err != nil {
		t.Fatalf("chromium download behaviour: %v", err)
	}
	return u
}

// do runs actions, bounded.
func (u *ui) do(what string, bound time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, bound)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		u.fail(what, err)
	}
}

// waitFor polls a JavaScript predicate until it is true, bounded.
func (u *ui) waitFor(what string, bound time.Duration, predicate string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, bound+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(bound))); err != nil {
		u.fail(what, err)
	}
}

// text returns the text content of the first element sel matches ("" if
// none does).
func (u *ui) text(sel string) string {
	u.t.Helper()
	return evalString(u, fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, jsString(sel)))
}

func evalString(u *ui, js string) string {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		u.fail("evaluate "+js, err)
	}
	return s
}

// choose sets a select's value as a user would (input and change events).
func (u *ui) choose(sel, value string) {
	u.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return e.value; })()`,
		jsString(sel), jsString(value))
	if got := evalString(u, js); got != value {
		u.t.Fatalf("select %s: value %q after choosing %q", sel, got, value)
	}
}

// shot saves a PNG of the whole page as name.png.
func (u *ui) shot(name string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		u.fail("screenshot "+name, err)
	}
	p := filepath.Join(u.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		u.t.Fatalf("screenshot %s: %v", name, err)
	}
	u.t.Logf("screenshot: %s", p)
}

// fail stops the test with a screenshot and the page's console.
func (u *ui) fail(what string, err error) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	if png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		p := filepath.Join(u.shots, "failure.png")
		if os.WriteFile(p, png, 0o644) == nil {
			u.t.Logf("failure screenshot: %s", p)
		}
	}
	u.t.Logf("page console:\n%s", u.consoleText())
	u.t.Fatalf("%s: %v", what, err)
}

func (u *ui) consoleText() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	for _, m := range u.messages {
		fmt.Fprintf(&b, "  %s (%s:%d)\n", m, m.URL, m.Line)
	}
	return b.String()
}

// requireCleanConsole fails the test on an uncaught exception, a console
// error written by the page, or a blocked load (Content-Security-Policy).
// Failed requests the test provoked (401, 404) are the browser's network
// log lines and are allowed.
func (u *ui) requireCleanConsole() {
	u.t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, m := range u.messages {
		bad := m.IsException() ||
			(m.Source == "" && m.Type == chromedp.ConsoleError) ||
			strings.Contains(m.Text, "Content Security Policy") ||
			m.Source == "security"
		if bad {
			u.t.Errorf("page console: %s (%s:%d)", m, m.URL, m.Line)
		}
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// rowSel selects a table row by one of its data attributes.
func rowSel(table, attr, value string) string {
	return fmt.Sprintf(`%s tbody tr[%s=%s]`, table, attr, jsString(value))
}

func present(sel string) string {
	return fmt.Sprintf(`document.querySelector(%s) !== null`, jsString(sel))
}

// TestConsoleLoginPage: the console alone (no API behind it) renders its
// login page in Chromium without a script error or a blocked load, and a
// login against a server without /api/v1 says so instead of entering.
func TestConsoleLoginPage(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, console.Handler())
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()

	u := startUI(t)
	u.do("open the console", 20*time.Second,
		chromedp.Navigate(srv.URL+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#actor")),
	)
	if evalString(u, `typeof Chart`) != "function" {
		t.Error("the embedded Chart.js did not load")
	}
	if !strings.Contains(u.text("#login-view h2"), "Sign in") {
		t.Errorf("login heading %q", u.text("#login-view h2"))
	}
	u.shot("login")
	u.do("sign in", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS("#token"), "0123456789abcdef0123"),
		chromedp.SendKeys(chromedp.CSS("#actor"), "alice"),
		chromedp.Click(chromedp.CSS("#login")),
	)
	u.waitFor("the login error", 10*time.Second, `!document.querySelector('#login-error').hidden`)
	if got := u.text("#login-error"); !strings.Contains(got, "no /api/v1") {
		t.Errorf("login error %q, want it to say that the server has no /api/v1", got)
	}
	if !u.waitHidden("#app") {
		t.Error("the console opened although the login failed")
	}
	u.requireCleanConsole()
}

func (u *ui) waitHidden(sel string) bool {
	return evalString(u, fmt.Sprintf(`String(document.querySelector(%s).hidden)`, jsString(sel))) == "true"
}

// consolePolicy has a managed DNC list that the console edits, used by a
// dnc rule on calls from the PBX side.
const consolePolicy = `lists:
  - {name: dnc-api, managed: true}
rules:
  - name: dnc
    type: dnc
    match: {realm: inside}
    lists: [dnc-api]
    action: {type: reject, code: 603}
`

// TestConsoleEndToEnd is the operator's path through the web console with
// the real binary: SIPp places a call through the inside realm to a SIPp
// trunk; in Chromium the operator logs in, finds the call among the recent
// decisions, opens its explain view, adds the called number to the managed
// DNC list, and SIPp's next call to that number gets 603. Along the way the
// filters, the rejected call's explain view, the rule hit chart, the
// traceback search with its CSV export, the complaint form, the removal of
// the entry and the audit trail are used, and each page is photographed.
func TestConsoleEndToEnd(t *testing.T) {
	requireSipp(t)
	requireChromium(t)
	dir := t.TempDir()
	token, tokenFile := adminToken(t)
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(consolePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 5 * time.Second
	cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\nrecords:\n  backend: sqlite\n  path: %q\n", polFile, filepath.Join(dir, "records.db"))
	cfg.TokenFile = tokenFile
	p := startProxy(t, cfg)

	const callee = "+15559870002"
	const calleeCanon = "15559870002"

	// 1. A call through the inside realm to the trunk: forwarded, answered.
	uas := startSipp(t, sippRun{Name: "trunk", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: 1, Timeout: 30 * time.Second})
	first := runSipp(t, sippRun{Name: "pbx", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Service: callee, Calls: 1, Timeout: 30 * time.Second})
	first.require(t, 1)
	uas.Wait(t).require(t, 1)
	firstID := sippCallID(t, first)

	// 2. Log in.
	u := startUI(t)
	u.do("open the console", 20*time.Second,
		chromedp.Navigate(cfg.AdminURL()+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
	u.shot("01-login")
	u.do("sign in", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.SendKeys(chromedp.CSS("#actor"), "alice"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#view-decisions")),
	)
	if got := u.text("#whoami"); got != "alice" {
		t.Errorf("signed in as %q, want alice", got)
	}

	// 3. The call among the recent decisions (polled every 2 s; the record
	// is written by a background writer), and the filters.
	firstRow := rowSel("#records", "data-call-id", firstID)
	u.waitFor("the SIPp call in the recent decisions", 20*time.Second, present(firstRow))
	if got := evalString(u, fmt.Sprintf(`document.querySelector(%s).dataset.decision`, jsString(firstRow))); got != "forwarded" {
		t.Errorf("the first call's decision in the table: %q, want forwarded", got)
	}
	u.do("filter by number", 10*time.Second, chromedp.SendKeys(chromedp.CSS("#f-number"), "+1 555 987 0002"))
	u.choose("#f-decision", "rejected")
	u.waitFor("the forwarded call filtered out by decision=rejected", 10*time.Second, "!("+present(firstRow)+")")
	u.choose("#f-decision", "forwarded")
	u.waitFor("the forwarded call back with decision=forwarded", 10*time.Second, present(firstRow))
	u.choose("#f-decision", "")
	u.shot("02-decisions")

	// 4. Its explain view.
	u.do("open the call's explain view", 20*time.Second,
		chromedp.Click(chromedp.CSS(firstRow)),
		chromedp.WaitVisible(chromedp.CSS("#explain")),
	)
	if got := u.text(`#explain-record dd[data-field="call_id"]`); got != firstID {
		t.Errorf("explain view Call-ID %q, want %q", got, firstID)
	}
	if got := evalString(u, `document.querySelector('#explain-decision').dataset.decision`); got != "forwarded" {
		t.Errorf("explain view decision %q (%q), want forwarded", got, u.text("#explain-decision"))
	}
	if got := u.text(`#explain-record dd[data-field="status"]`); got != "200" {
		t.Errorf("explain view status %q, want 200", got)
	}
	if n := evalString(u, `String(document.querySelectorAll('#explain-steps li').length)`); n == "0" {
		t.Error("explain view lists no stage")
	}
	u.shot("03-explain")

	// 5. Add the called number to the managed DNC list.
	u.do("open the lists", 20*time.Second,
		chromedp.Click(chromedp.CSS("#tab-lists")),
		chromedp.WaitVisible(chromedp.CSS("#list-form")),
	)
	u.waitFor("the managed list dnc-api", 10*time.Second, present(`#list-name option[value="dnc-api"]`))
	u.choose("#list-name", "dnc-api")
	u.do("add the number", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS("#list-number"), "+1 555 987 0002"),
		chromedp.SendKeys(chromedp.CSS("#list-note"), "complaint ticket 42"),
		chromedp.Click(chromedp.CSS("#list-add")),
	)
	entry := rowSel("#list-entries", "data-number", calleeCanon)
	u.waitFor("the new entry in the list", 10*time.Second, present(entry))
	if got := u.text(entry + " td:nth-child(3)"); got != "alice" {
		t.Errorf("entry added by %q, want alice", got)
	}
	if got := u.text(entry + " td:nth-child(2)"); got != "complaint ticket 42" {
		t.Errorf("entry note %q", got)
	}
	u.shot("04-lists")

	// 6. The change takes effect within 1 s: wait (bounded) until the
	// policy would reject the call, then SIPp's call gets 603.
	waitDryRun603(t, cfg, token, callee)
	second := runSipp(t, sippRun{Name: "pbx-dnc", Scenario: "uac_603.xml", Remote: cfg.InsideAddr(), Service: callee, Calls: 1, Timeout: 30 * time.Second})
	second.require(t, 1)
	secondID := sippCallID(t, second)

	// The rejected call in the recent decisions.
	u.do("back to the decisions", 20*time.Second,
		chromedp.Click(chromedp.CSS("#tab-decisions")),
		chromedp.WaitVisible(chromedp.CSS("#records")),
	)
	secondRow := rowSel("#records", "data-call-id", secondID)
	u.waitFor("the 603 call in the recent decisions", 20*time.Second, present(secondRow))
	if got := evalString(u, fmt.Sprintf(`document.querySelector(%s).dataset.decision`, jsString(secondRow))); got != "rejected" {
		t.Errorf("the DNC call's decision in the table: %q, want rejected", got)
	}
	if got := u.text(secondRow + " td:nth-child(10)"); got != "603" {
		t.Errorf("the DNC call's status in the table: %q, want 603", got)
	}
	u.shot("05-decisions-rejected")

	// Its explain view names the rule and the list entry that matched.
	u.do("open the rejected call's explain view", 20*time.Second,
		chromedp.Click(chromedp.CSS(secondRow)),
		chromedp.WaitVisible(chromedp.CSS("#explain")),
	)
	u.waitFor("the rejected call's explain view", 10*time.Second,
		fmt.Sprintf(`document.querySelector('#explain-record dd[data-field="call_id"]').textContent === %s`, jsString(secondID)))
	if got := evalString(u, `document.querySelector('#explain-decision').dataset.decision`); got != "rejected" {
		t.Errorf("explain view of the DNC call: decision %q (%q), want rejected", got, u.text("#explain-decision"))
	}
	if hit := u.text(`#explain-hits tbody tr[data-rule="dnc"]`); !strings.Contains(hit, "reject") || !strings.Contains(hit, calleeCanon) {
		t.Errorf("explain view of the DNC call: rule hit %q, want the dnc rule rejecting %s", hit, calleeCanon)
	}
	u.shot("06-explain-rejected")

	// The dry run of the same INVITE on that page: rejected, 603, nothing sent.
	invite := strings.ReplaceAll(string(dncInvite(cfg.InsideAddr(), callee, 7001)), "\r\n", "\n")
	u.do("dry run of an INVITE", 20*time.Second,
		chromedp.Click(chromedp.CSS("#dry-run summary")),
		chromedp.WaitVisible(chromedp.CSS("#dry-invite")),
		chromedp.SetValue(chromedp.CSS("#dry-invite"), invite),
		chromedp.Click(chromedp.CSS("#dry-go")),
	)
	u.waitFor("the dry run's answer", 10*time.Second, present(`#dry-result dd[data-field="decision"]`))
	if d, c := u.text(`#dry-result dd[data-field="decision"]`), u.text(`#dry-result dd[data-field="code"]`); d != "rejected" || c != "603" {
		t.Errorf("dry run in the console: %s %s, want rejected 603 (status %q)", d, c, u.text("#dry-status"))
	}

	// 7. Rule hits: the dnc rule on the charts.
	u.do("open the rule hits", 20*time.Second,
		chromedp.Click(chromedp.CSS("#tab-hits")),
		chromedp.WaitVisible(chromedp.CSS("#chart-hour")),
	)
	u.waitFor("the dnc rule in the hit totals", 20*time.Second, present(`#hits-summary tbody tr[data-rule="dnc"]`))
	labels := evalString(u, `(() => { const c = Chart.getChart('chart-hour'); return c ? c.data.datasets.map(d => d.label + '=' + d.data.reduce((a, b) => a + b, 0)).join(',') : 'no chart'; })()`)
	if labels != "dnc=1" {
		t.Errorf("last hour chart datasets %q, want dnc=1", labels)
	}
	u.shot("07-hits")

	// 8. Traceback: both calls to the number, and the CSV export saved by
	// the browser holds them.
	u.do("traceback search", 20*time.Second,
		chromedp.Click(chromedp.CSS("#tab-trace")),
		chromedp.WaitVisible(chromedp.CSS("#trace-form")),
		chromedp.SendKeys(chromedp.CSS("#t-dest"), callee),
		chromedp.Click(chromedp.CSS("#trace-go")),
	)
	u.waitFor("both calls in the traceback results", 10*time.Second,
		present(rowSel("#trace-results", "data-call-id", firstID))+" && "+present(rowSel("#trace-results", "data-call-id", secondID)))
	u.do("CSV export", 10*time.Second, chromedp.Click(chromedp.CSS("#trace-csv")))
	u.waitFor("the export's status", 10*time.Second, `/exported \d+ bytes/.test(document.querySelector('#trace-status').textContent)`)
	csv := u.download(".csv", 10*time.Second)
	if !strings.HasPrefix(csv, "at,call_id,") || !strings.Contains(csv, firstID) || !strings.Contains(csv, secondID) {
		t.Errorf("the exported CSV lacks its header or one of the calls %s, %s:\n%s", firstID, secondID, csv)
	}
	u.shot("08-traceback")

	// 9. A complaint about the caller, then its reputation.
	u.do("file a complaint", 20*time.Second,
		chromedp.Click(chromedp.CSS("#tab-complaint")),
		chromedp.WaitVisible(chromedp.CSS("#complaint-form")),
		chromedp.SendKeys(chromedp.CSS("#c-number"), "+1 555 123 0001"),
		chromedp.SendKeys(chromedp.CSS("#c-note"), "called during dinner"),
	)
	u.choose("#c-category", "telemarketing")
	u.do("submit the complaint", 10*time.Second, chromedp.Click(chromedp.CSS("#c-submit")))
	u.waitFor("the complaint's answer", 10*time.Second, `/Complaint recorded: 15551230001 now has 1 complaint /.test(document.querySelector('#c-result').textContent)`)
	u.do("look up the caller", 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#n-number"), "+15551230001"),
		chromedp.Click(chromedp.CSS("#n-lookup")),
	)
	u.waitFor("the caller's reputation", 10*time.Second, present(`#n-result dd[data-field="complaints"]`))
	if got := u.text(`#n-result dd[data-field="complaints"]`); !strings.HasPrefix(got, "1") {
		t.Errorf("the caller's complaints: %q, want 1", got)
	}
	u.shot("09-complaint")

	// 10. Remove the number from the list again.
	u.do("open the lists", 20*time.Second,
		chromedp.Click(chromedp.CSS("#tab-lists")),
		chromedp.WaitVisible(chromedp.CSS(entry+" button.list-remove")),
		chromedp.Click(chromedp.CSS(entry+" button.list-remove")),
	)
	u.waitFor("the entry gone from the list", 10*time.Second, "!("+present(entry)+")")

	// 11. The audit trail names who did what.
	u.do("open the audit trail", 20*time.Second,
		chromedp.Click(chromedp.CSS("#tab-audit")),
		chromedp.WaitVisible(chromedp.CSS("#audit")),
	)
	for _, change := range [][2]string{{"list.add", "dnc-api/" + calleeCanon}, {"complaint", "15551230001"}, {"list.remove", "dnc-api/" + calleeCanon}} {
		u.waitFor("the audit line "+change[0], 10*time.Second,
			fmt.Sprintf(`[...document.querySelectorAll('#audit tbody tr')].some(r => r.cells[2].textContent === 'alice' && r.cells[3].textContent === %s && r.cells[4].textContent === %s)`,
				jsString(change[0]), jsString(change[1])))
	}
	u.shot("10-audit")

	u.requireCleanConsole()
	if t.Failed() {
		t.Logf("stirgate log tail:\n%s", tail(p.Log(), 40))
	}
}

// download waits (bounded) for a finished file ending in ext among the
// browser's downloads and returns its content.
func (u *ui) download(ext string, bound time.Duration) string {
	u.t.Helper()
	deadline := time.Now().Add(bound)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		files, _ := filepath.Glob(filepath.Join(u.downloads, "*"+ext))
		if len(files) > 0 {
			b, err := os.ReadFile(files[0])
			if err != nil {
				u.t.Fatalf("download: %v", err)
			}
			return string(b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	entries, _ := os.ReadDir(u.downloads)
	u.fail("download", fmt.Errorf("no %s file in %s within %s (%d other files)", ext, u.downloads, bound, len(entries)))
	return ""
}

// sippCallID is the Call-ID of the first message SIPp traced.
func sippCallID(t *testing.T, res sippResult) string {
	t.Helper()
	for _, line := range strings.Split(readFile(filepath.Join(res.Dir, "messages.log")), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Call-ID:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("sipp %s: no Call-ID in messages.log", res.Name)
	return ""
}

// waitDryRun603 asks the admin API's dry run (POST /api/v1/explain) until
// an INVITE to callee from the PBX side would be rejected with 603: a
// managed list change reaches the policy within 1 s. Bounded: 50 tries,
// 200 ms apart.
func waitDryRun603(t *testing.T, cfg proxyConfig, token, callee string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for i := range 50 {
		body, _ := json.Marshal(map[string]string{
			"realm":  "inside",
			"source": hostPort(5060), // the PBX's address; nothing is sent
			"invite": string(dncInvite(cfg.InsideAddr(), callee, 9000+i)),
		})
		req, err := http.NewRequest(http.MethodPost, cfg.AdminURL()+"/api/v1/explain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Actor", "console-test")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST /api/v1/explain: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/v1/explain: %s: %s", resp.Status, b)
		}
		var res struct {
			Decision string `json:"decision"`
			Code     int    `json:"code"`
		}
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatalf("POST /api/v1/explain: %v: %s", err, b)
		}
		if res.Decision == "rejected" && res.Code == 603 {
			return
		}
		last = string(b)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the number added in the console is not rejected by the policy after 50 dry runs; last answer: %s", last)
}
