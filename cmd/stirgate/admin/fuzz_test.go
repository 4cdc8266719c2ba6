package admin

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzAPI sends arbitrary requests (method, path with query, body) with
// the token to the API over a real SQLite database: every answer is JSON
// (or an export, or the mux's redirect to a cleaned path), never a panic, and never a 500 (the database works; any
// 500 would be a request the API failed to refuse as bad input).
func FuzzAPI(f *testing.F) {
	for _, seed := range []struct{ method, target, body string }{
		{"GET", "/api/v1/records?number=%2B12025550142&from=2026-12-07T10:00:00Z&limit=5", ""},
		{"GET", "/api/v1/records/export?format=csv&decision=rejected", ""},
		{"GET", "/api/v1/records/explain?call_id=x&at=2026-12-07T10:00:00Z", ""},
		{"POST", "/api/v1/explain", `{"realm":"inside","invite":"INVITE sip:1@x SIP/2.0\n\n"}`},
		{"PUT", "/api/v1/lists/dnc-api/+12025550142", `{"note":"n","expires":"2030-01-01T00:00:00Z"}`},
		{"DELETE", "/api/v1/lists/dnc-api/12025550142", ""},
		{"POST", "/api/v1/complaints", `{"number":"+12025550199","category":"fraud"}`},
		{"GET", "/api/v1/numbers/12025550199", ""},
		{"DELETE", "/api/v1/numbers/12025550199/flags/protect", ""},
		{"GET", "/api/v1/rules/hits?window=24h", ""},
		{"GET", "/api/v1/audit?before=3&limit=2", ""},
	} {
		f.Add(seed.method, seed.target, seed.body)
	}
	fx := newFixture(f)
	h := fx.srv.Config.Handler
	f.Fuzz(func(t *testing.T, method, target, body string) {
		switch method {
		case "GET", "POST", "PUT", "DELETE":
		default:
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(u.Path, "/api/v1/") {
			return
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+u.String(), strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 300 && rec.Code < 400 { // the mux's redirect to the cleaned path
			if rec.Header().Get("Location") == "" {
				t.Fatalf("%s %s: %d without Location", method, target, rec.Code)
			}
			return
		}
		ct := rec.Header().Get("Content-Type")
		if rec.Code != http.StatusNoContent && !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "text/csv") && ct != "application/x-ndjson" {
			t.Fatalf("%s %s: %d with Content-Type %q", method, target, rec.Code, ct)
		}
	})
}
