package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// In sign mode the callee (uas_identity.xml) fails a call whose INVITE has
// no Identity shaped like a signed one, and logs the whole header value of
// a sample of calls to identityLog. The shape alone proves nothing (a
// constant string has it): after the step the bench checks the logged
// values with secsipidx, an independent verifier, and their claims against
// the calls SIPp placed.
const (
	identityLog = "identities.log"
	// identitySampleMax bounds the secsipidx runs per step: one process
	// and one certificate download per header.
	identitySampleMax = 20

	// What every call of the bench is: uac.xml calls from this number to
	// callee, and both proxies attest A for it.
	benchCaller = "15551230001"
	benchAttest = "A"
)

// identitySample is what one sign-mode step's check found.
type identitySample struct {
	Logged   int `json:"logged"`   // header values the callee logged (call 1 and every 10th)
	Checked  int `json:"checked"`  // of those, run through secsipidx (evenly spread)
	Verified int `json:"verified"` // of the checked, verified by secsipidx
}

// secsipidx finds the secsipidx binary (Debian package secsipidx).
func secsipidx() (string, error) {
	for _, p := range []string{"secsipidx", "/usr/bin/secsipidx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("secsipidx not found (Debian package secsipidx)")
}

// checkIdentities reads the callee's identityLog and checks it: every
// logged value decodes to the claims of a bench call (attest A, orig
// benchCaller, dest callee, iat not before since and not in the future)
// with an origid no other value has, and up to identitySampleMax of them,
// spread over the step, verify with `secsipidx -check`: the ES256 signature
// with the certificate downloaded from the header's info URL, which must be
// the bench's x5u, chained to the bench root (-cert-verify 5), iat at most
// expire old. An empty log is an error too: the step checked nothing.
func (e *env) checkIdentities(ctx context.Context, logPath string, since time.Time, expire time.Duration) (identitySample, error) {
	var res identitySample
	ids, err := readIdentityLog(logPath)
	if err != nil {
		return res, err
	}
	res.Logged = len(ids)
	if len(ids) == 0 {
		return res, fmt.Errorf("the callee logged no Identity header to check (%s)", logPath)
	}
	origids := make(map[string]int, len(ids))
	for i, id := range ids {
		c, err := identityClaims(id)
		if err != nil {
			return res, fmt.Errorf("logged header %d: %w", i+1, err)
		}
		if err := c.check(since, time.Now()); err != nil {
			return res, fmt.Errorf("logged header %d: %w", i+1, err)
		}
		if j, dup := origids[c.OrigID]; dup {
			return res, fmt.Errorf("logged headers %d and %d share origid %q: a replayed or constant header", j+1, i+1, c.OrigID)
		}
		origids[c.OrigID] = i
	}
	bin, err := secsipidx()
	if err != nil {
		return res, err
	}
	dir := filepath.Dir(logPath)
	var failed []string
	for _, i := range spread(len(ids), identitySampleMax) {
		res.Checked++
		if err := e.secsipidxCheck(ctx, bin, dir, ids[i], expire); err != nil {
			failed = append(failed, fmt.Sprintf("header %d: %v", i+1, err))
			continue
		}
		res.Verified++
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("secsipidx refused %d of %d sampled headers: %s", len(failed), res.Checked, failed[0])
	}
	return res, nil
}

// readIdentityLog returns the header values SIPp logged, one a line.
func readIdentityLog(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity log: %w", err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if v := strings.TrimSpace(sc.Text()); v != "" {
			ids = append(ids, v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("identity log %s: %w", path, err)
	}
	return ids, nil
}

// spread picks at most limit indexes of n, evenly apart, first and last
// included.
func spread(n, limit int) []int {
	if n <= limit {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, 0, limit)
	for i := range limit {
		out = append(out, i*(n-1)/(limit-1))
	}
	return out
}

// passportClaims are the PASSporT claims the bench looks at.
type passportClaims struct {
	Attest string `json:"attest"`
	Dest   struct {
		TN []string `json:"tn"`
	} `json:"dest"`
	IAT  int64 `json:"iat"`
	Orig struct {
		TN string `json:"tn"`
	} `json:"orig"`
	OrigID string `json:"origid"`
}

// identityClaims decodes the payload of a full Identity header value (no
// signature check: secsipidx does that).
func identityClaims(id string) (passportClaims, error) {
	var c passportClaims
	jws, _, _ := strings.Cut(id, ";")
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return c, fmt.Errorf("not a compact JWS: %.60q", jws)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, fmt.Errorf("payload: %w", err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("payload: %w", err)
	}
	return c, nil
}

// check compares the claims with the call the bench placed, signed
// between since and now (iat has whole seconds).
func (c passportClaims) check(since, now time.Time) error {
	want := strings.TrimPrefix(callee, "+")
	switch {
	case c.Attest != benchAttest:
		return fmt.Errorf("attest %q, want %s", c.Attest, benchAttest)
	case c.Orig.TN != benchCaller:
		return fmt.Errorf("orig.tn %q, want %s", c.Orig.TN, benchCaller)
	case !slices.Equal(c.Dest.TN, []string{want}):
		return fmt.Errorf("dest.tn %q, want [%s]", c.Dest.TN, want)
	case c.OrigID == "":
		return errors.New("no origid")
	case c.IAT < since.Unix() || c.IAT > now.Unix():
		return fmt.Errorf("iat %d outside the step (%d..%d)", c.IAT, since.Unix(), now.Unix())
	}
	return nil
}

// secsipidxCheck runs `secsipidx -check` on one full header value.
func (e *env) secsipidxCheck(ctx context.Context, bin, dir, id string, expire time.Duration) error {
	info := infoURL(id)
	if info != e.x5u {
		return fmt.Errorf("info=<%s>, want the bench x5u %s", info, e.x5u)
	}
	f, err := os.CreateTemp(dir, "identity-*.txt")
	if err != nil {
		return fmt.Errorf("secsipidx input: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("secsipidx input: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-check", "-fidentity", f.Name(), "-fpubkey", info,
		"-expire", strconv.Itoa(int(expire.Seconds())), "-timeout", "3",
		"-cert-verify", "5", "-ca-file", filepath.Join(e.pki, "root.pem"))
	out, err := cmd.CombinedOutput()
	last := strings.TrimSpace(string(out))
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	if err != nil || last != "ok" {
		return fmt.Errorf("secsipidx -check: %v: %s", err, strings.Join(strings.Fields(string(out)), " "))
	}
	return nil
}

// infoURL is the info parameter of a full Identity header value.
func infoURL(id string) string {
	_, params, _ := strings.Cut(id, ";")
	for p := range strings.SplitSeq(params, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "info="); ok {
			return strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
		}
	}
	return ""
}
