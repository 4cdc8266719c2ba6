package console

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, srv *httptest.Server, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp, string(b)
}

func TestHandlerServesPageAndAssets(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(Prefix, Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		path, ctype, contains string
	}{
		{"/console/", "text/html; charset=utf-8", `<input id="token"`},
		{"/console/index.html", "text/html; charset=utf-8", `<table id="records"`},
		{"/console/app.js", "text/javascript; charset=utf-8", "Authorization: 'Bearer '"},
		{"/console/style.css", "text/css; charset=utf-8", ".tabs"},
		{"/console/vendor/chart.umd.min.js", "text/javascript; charset=utf-8", "Chart.js v4.6.1"},
		{"/console/vendor/chart.js-LICENSE.md", "text/plain; charset=utf-8", "MIT License"},
		{"/console/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(t, srv, http.MethodGet, tc.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s, want 200", resp.Status)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
				t.Errorf("Content-Security-Policy %q does not keep scripts and requests to the admin listener", csp)
			}
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			again, _ := get(t, srv, http.MethodGet, tc.path, map[string]string{"If-None-Match": etag})
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("with If-None-Match: status %s, want 304", again.Status)
			}
		})
	}
}

func TestHandlerRefusesTheRest(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(Prefix, Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tests := []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/console/nothing.js", http.StatusNotFound},
		{http.MethodGet, "/console/static/index.html", http.StatusNotFound},
		{http.MethodGet, "/console/vendor/", http.StatusNotFound},
		{http.MethodGet, "/console/%2e%2e/console.go", http.StatusNotFound},
		{http.MethodPost, "/console/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/console/app.js", http.StatusMethodNotAllowed},
		{http.MethodHead, "/console/app.js", http.StatusOK},
	}
	for _, tc := range tests {
		resp, _ := get(t, srv, tc.method, tc.path, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.status)
		}
	}
	// The handler alone (not behind the mux, which cleans paths) serves no
	// file outside its assets.
	for _, p := range []string{"/console/../go.mod", "/console/../console.go", "/console//etc/passwd", "/other/index.html"} {
		rec := httptest.NewRecorder()
		Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("handler alone, GET %s: %d, want 404", p, rec.Code)
		}
	}
	// And it sends /console to /console/.
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console", nil))
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != Prefix {
		t.Errorf("/console: %d to %q, want 301 to %s", rec.Code, rec.Header().Get("Location"), Prefix)
	}
}

// xmlNamespaces are identifiers that look like URLs and are never fetched.
var xmlNamespaces = []string{"http://www.w3.org/2000/svg"}

// licenseComment is a /*! ... */ block: the vendored library's notice,
// which names its home page.
var licenseComment = regexp.MustCompile(`(?s)/\*!.*?\*/`)

var externalURL = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)

// TestAssetsAreSelfContained: the console works offline, so no asset
// loads anything from another host: no http(s) URL anywhere but in the
// vendored library's license comments, no protocol-relative URL, and the
// page loads only its own scripts and styles.
func TestAssetsAreSelfContained(t *testing.T) {
	all, err := assets()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 5 {
		t.Fatalf("only %d assets embedded", len(all))
	}
	for name, a := range all {
		if strings.HasSuffix(name, ".md") {
			continue // a license text, never loaded by the page
		}
		text := string(a.body)
		if strings.HasPrefix(name, "vendor/") {
			text = licenseComment.ReplaceAllString(text, "")
		}
		for _, ns := range xmlNamespaces {
			text = strings.ReplaceAll(text, ns, "")
		}
		if m := externalURL.FindAllString(text, 5); len(m) > 0 {
			t.Errorf("%s refers to other hosts: %q", name, m)
		}
	}
	page := string(all["index.html"].body)
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		ref := m[1]
		if strings.HasPrefix(ref, "#") {
			continue
		}
		if _, ok := all[ref]; !ok {
			t.Errorf("index.html refers to %q, which is not an embedded asset", ref)
		}
	}
}

// TestNoHTMLFromData: the page puts what the API returns into the DOM as
// text only.
func TestNoHTMLFromData(t *testing.T) {
	all, err := assets()
	if err != nil {
		t.Fatal(err)
	}
	js := string(all["app.js"].body)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

// TestVendoredChartJS: the embedded Chart.js is the release README.md
// names, byte for byte.
func TestVendoredChartJS(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("sha256 `([0-9a-f]{64})`").FindStringSubmatch(string(readme))
	if m == nil {
		t.Fatal("README.md names no sha256 of chart.umd.min.js")
	}
	all, err := assets()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(all["vendor/chart.umd.min.js"].body)
	if got := hex.EncodeToString(sum[:]); got != m[1] {
		t.Errorf("vendor/chart.umd.min.js sha256 %s, README.md says %s", got, m[1])
	}
	if !strings.Contains(string(readme), "4.6.1") || !strings.Contains(string(all["vendor/chart.umd.min.js"].body), "Chart.js v4.6.1") {
		t.Error("README.md and the vendored file disagree on the Chart.js version")
	}
}

func TestLoadRefusesUnknownTypes(t *testing.T) {
	tests := []struct {
		name string
		fs   fstest.MapFS
		ok   bool
	}{
		{"good", fstest.MapFS{"static/index.html": {Data: []byte("x")}}, true},
		{"no index", fstest.MapFS{"static/app.js": {Data: []byte("x")}}, false},
		{"unknown type", fstest.MapFS{"static/index.html": {Data: []byte("x")}, "static/x.wasm": {Data: []byte("x")}}, false},
	}
	for _, tc := range tests {
		_, err := load(fs.FS(tc.fs))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
