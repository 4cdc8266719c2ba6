package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/policy"
	"github.com/stirgate/stirgate/policy/records"
)

// Entry is the JSON form of a managed list entry.
type Entry struct {
	Number  string     `json:"number"`
	Note    string     `json:"note"`
	AddedBy string     `json:"added_by"`
	Added   time.Time  `json:"added"`
	Expires *time.Time `json:"expires"`
}

func entryOf(e records.Entry) Entry {
	out := Entry{Number: e.Number, Note: e.Note, AddedBy: e.AddedBy, Added: e.Added}
	if !e.Expires.IsZero() {
		t := e.Expires
		out.Expires = &t
	}
	return out
}

// managedList checks that the path's list is a managed list of the policy
// in force and returns its name, or answers 404.
func (a *API) managedList(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("list")
	if !slices.Contains(a.policy().ManagedListNames(), name) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no managed list %q (a policy file declares one with managed: true)", name))
		return "", false
	}
	return name, true
}

// entryTarget reads what an entry request acts on: the record database,
// the managed list and the number; or it answers the error.
func (a *API) entryTarget(w http.ResponseWriter, r *http.Request) (st records.Store, list, tn string, ok bool) {
	if st = a.store(w); st == nil {
		return nil, "", "", false
	}
	if list, ok = a.managedList(w, r); !ok {
		return nil, "", "", false
	}
	if tn, ok = number(w, r); !ok {
		return nil, "", "", false
	}
	return st, list, tn, true
}

// number reads and canonicalises the path's number, or answers 400.
func number(w http.ResponseWriter, r *http.Request) (string, bool) {
	tn, ok := passport.Canonical(r.PathValue("number"))
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a telephone number", r.PathValue("number")))
	}
	return tn, ok
}

func (a *API) lists(w http.ResponseWriter, r *http.Request) {
	st := a.store(w)
	if st == nil {
		return
	}
	entries, err := st.Entries(r.Context(), "", "", a.now())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	count := map[string]int{}
	for _, en := range entries {
		count[en.List]++
	}
	type list struct {
		Name    string `json:"name"`
		Entries int    `json:"entries"`
	}
	out := []list{}
	for _, name := range a.policy().ManagedListNames() {
		out = append(out, list{name, count[name]})
	}
	writeJSON(w, http.StatusOK, map[string]any{"lists": out})
}

func (a *API) listEntries(w http.ResponseWriter, r *http.Request) {
	st := a.store(w)
	if st == nil {
		return
	}
	name, ok := a.managedList(w, r)
	if !ok {
		return
	}
	entries, err := st.Entries(r.Context(), name, "", a.now())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := make([]Entry, len(entries))
	for i, e := range entries {
		out[i] = entryOf(e)
	}
	writeJSON(w, http.StatusOK, map[string]any{"list": name, "entries": out})
}

func (a *API) checkEntry(w http.ResponseWriter, r *http.Request) {
	st, name, tn, ok := a.entryTarget(w, r)
	if !ok {
		return
	}
	found, err := st.Entries(r.Context(), name, tn, a.now())
	switch {
	case err != nil:
		a.internal(w, r, err)
	case len(found) == 0:
		writeJSON(w, http.StatusNotFound, map[string]any{"listed": false, "number": tn})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"listed": true, "entry": entryOf(found[0])})
	}
}

func (a *API) putEntry(w http.ResponseWriter, r *http.Request) {
	st, name, tn, ok := a.entryTarget(w, r)
	if !ok {
		return
	}
	var in struct {
		Note    string     `json:"note"`
		Expires *time.Time `json:"expires"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&in); err != nil {
			writeError(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
	}
	now := a.now()
	if len(in.Note) > 500 {
		writeError(w, http.StatusBadRequest, "note: at most 500 characters")
		return
	}
	e := records.Entry{List: name, Number: tn, Note: in.Note, AddedBy: actor(r), Added: now}
	detail := in.Note
	if in.Expires != nil {
		if !in.Expires.After(now) {
			writeError(w, http.StatusBadRequest, "expires: in the past")
			return
		}
		e.Expires = in.Expires.UTC()
		detail = strings.TrimSpace(detail + " (expires " + e.Expires.Format(time.RFC3339) + ")")
	}
	c := records.Change{At: now, Actor: actor(r), Action: "list.add", Target: name + "/" + tn, Detail: detail}
	if err := st.PutEntry(r.Context(), e, c); err != nil {
		a.internal(w, r, err)
		return
	}
	a.log().Info("managed list entry added", "list", name, "number", tn, "actor", c.Actor)
	writeJSON(w, http.StatusOK, map[string]any{"entry": entryOf(e)})
}

func (a *API) deleteEntry(w http.ResponseWriter, r *http.Request) {
	st, name, tn, ok := a.entryTarget(w, r)
	if !ok {
		return
	}
	c := records.Change{At: a.now(), Actor: actor(r), Action: "list.remove", Target: name + "/" + tn}
	found, err := st.DeleteEntry(r.Context(), name, tn, c)
	switch {
	case err != nil:
		a.internal(w, r, err)
	case !found:
		writeError(w, http.StatusNotFound, tn+" is not on "+name)
	default:
		a.log().Info("managed list entry removed", "list", name, "number", tn, "actor", c.Actor)
		w.WriteHeader(http.StatusNoContent)
	}
}

// policy is the policy in force, nil when there is none.
func (a *API) policy() *policy.Engine {
	if a.Engine == nil {
		return nil
	}
	return a.Engine()
}

// engine returns the policy in force or answers 503.
func (a *API) engine(w http.ResponseWriter) *policy.Engine {
	e := a.policy()
	if e == nil {
		writeError(w, http.StatusServiceUnavailable, "no policy in force (policy.files is empty)")
	}
	return e
}

func (a *API) complain(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Number   string `json:"number"`
		Category string `json:"category"`
		Reporter string `json:"reporter"`
		Note     string `json:"note"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	tn, ok := passport.Canonical(in.Number)
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("number: %q is not a telephone number", in.Number))
		return
	}
	if !slices.Contains(Categories, in.Category) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("category: %q is not one of %s", in.Category, strings.Join(Categories, ", ")))
		return
	}
	if len(in.Reporter) > 200 || len(in.Note) > 1000 {
		writeError(w, http.StatusBadRequest, "reporter (200) or note (1000 characters) too long")
		return
	}
	e := a.engine(w)
	if e == nil {
		return
	}
	now := a.now()
	n, err := e.Complain(r.Context(), tn, now)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	if st := a.Records; st != nil {
		detail := strings.TrimSpace(fmt.Sprintf("%s reporter=%q %s", in.Category, in.Reporter, in.Note))
		if err := st.Audit(r.Context(), records.Change{At: now, Actor: actor(r), Action: "complaint", Target: tn, Detail: detail}); err != nil {
			a.internal(w, r, err)
			return
		}
	}
	a.log().Info("complaint recorded", "subject", tn, "category", in.Category, "actor", actor(r))
	writeJSON(w, http.StatusAccepted, map[string]any{"number": tn, "complaints": n})
}

func (a *API) inspectNumber(w http.ResponseWriter, r *http.Request) {
	tn, ok := number(w, r)
	if !ok {
		return
	}
	e := a.engine(w)
	if e == nil {
		return
	}
	now := a.now()
	s, err := e.Inspect(r.Context(), tn, now)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	lists := []string{}
	if a.Records != nil {
		entries, err := a.Records.Entries(r.Context(), "", tn, now)
		if err != nil {
			a.internal(w, r, err)
			return
		}
		for _, en := range entries {
			lists = append(lists, en.List)
		}
	}
	until := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	var protect *time.Time
	for _, t := range s.Protect {
		if protect == nil || t.After(*protect) {
			protect = until(t)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"number": tn, "complaints": s.Complaints, "complaint_window_seconds": int(s.Window.Seconds()),
		"flags": map[string]bool{policy.FlagOneRing: !s.OneRing.IsZero(), policy.FlagProtect: protect != nil},
		"until": map[string]*time.Time{policy.FlagOneRing: until(s.OneRing), policy.FlagProtect: protect},
		"lists": lists,
	})
}

func (a *API) clearFlag(w http.ResponseWriter, r *http.Request) {
	tn, ok := number(w, r)
	if !ok {
		return
	}
	flag := r.PathValue("flag")
	if flag != policy.FlagOneRing && flag != policy.FlagProtect {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no flag %q (one_ring or protect)", flag))
		return
	}
	e := a.engine(w)
	if e == nil {
		return
	}
	now := a.now()
	if err := e.ClearFlag(r.Context(), tn, flag, now); err != nil {
		a.internal(w, r, err)
		return
	}
	if st := a.Records; st != nil {
		if err := st.Audit(r.Context(), records.Change{At: now, Actor: actor(r), Action: "flag.clear", Target: tn, Detail: flag}); err != nil {
			a.internal(w, r, err)
			return
		}
	}
	a.log().Info("flag cleared", "number", tn, "flag", flag, "actor", actor(r))
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) ruleHits(w http.ResponseWriter, r *http.Request) {
	st := a.store(w)
	if st == nil {
		return
	}
	window, bucket := time.Hour, time.Minute
	switch v := r.URL.Query().Get("window"); v {
	case "", "1h":
	case "24h":
		window, bucket = 24*time.Hour, time.Hour
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("window: %q is not 1h or 24h", v))
		return
	}
	counts, err := st.RuleHits(r.Context(), a.now().Add(-window), bucket)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	type point struct {
		T     time.Time `json:"t"`
		Calls int64     `json:"calls"`
	}
	type series struct {
		Rule   string  `json:"rule"`
		Points []point `json:"points"`
	}
	out := []series{}
	idx := map[string]int{}
	for _, c := range counts {
		i, ok := idx[c.Rule]
		if !ok {
			i = len(out)
			idx[c.Rule] = i
			out = append(out, series{Rule: c.Rule})
		}
		out[i].Points = append(out[i].Points, point{c.Bucket, c.Calls})
	}
	writeJSON(w, http.StatusOK, map[string]any{"bucket_seconds": int(bucket.Seconds()), "series": out})
}

func (a *API) audit(w http.ResponseWriter, r *http.Request) {
	st := a.store(w)
	if st == nil {
		return
	}
	var before int64
	limit := 100
	var err error
	if s := r.URL.Query().Get("before"); s != "" {
		if before, err = strconv.ParseInt(s, 10, 64); err != nil || before < 1 {
			writeError(w, http.StatusBadRequest, "before: want an audit line ID")
			return
		}
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 1000 {
			writeError(w, http.StatusBadRequest, "limit: want 1..1000")
			return
		}
	}
	changes, err := st.Changes(r.Context(), before, limit)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	type change struct {
		ID     int64     `json:"id"`
		At     time.Time `json:"at"`
		Actor  string    `json:"actor"`
		Action string    `json:"action"`
		Target string    `json:"target"`
		Detail string    `json:"detail"`
	}
	out := make([]change, len(changes))
	for i, c := range changes {
		out[i] = change{c.ID, c.At, c.Actor, c.Action, c.Target, c.Detail}
	}
	writeJSON(w, http.StatusOK, map[string]any{"changes": out})
}
