package policy

import (
	"sync/atomic"
	"time"

	"github.com/stirgate/stirgate/policy/numbers"
)

// lookupList is what a rule looks numbers up in: a list compiled from a
// file or inline numbers, or a managed list.
type lookupList interface {
	Name() string
	Lookup(tn string, now time.Time) (numbers.Match, bool)
}

// ManagedLists holds the lists that operators edit through the admin API
// (`managed: true` in a policy file) rather than in files. It outlives
// configuration generations; Set swaps every list at once, so a rule sees
// either the old or the new contents, never half of a change.
type ManagedLists struct {
	lists atomic.Pointer[map[string]*numbers.List]
}

// ManagedEntry is one number on a managed list.
type ManagedEntry struct {
	List, Number string
	Expires      time.Time // zero: never
}

// Set replaces the contents of every managed list with entries; a list
// with no entry is empty. Numbers are canonical (the API checked them).
func (m *ManagedLists) Set(entries []ManagedEntry) error {
	builders := map[string]*numbers.Builder{}
	for _, e := range entries {
		b := builders[e.List]
		if b == nil {
			b = numbers.NewBuilder(e.List)
			builders[e.List] = b
		}
		if err := b.AddNumber(e.Number, e.Expires); err != nil {
			return err
		}
	}
	lists := make(map[string]*numbers.List, len(builders))
	for name, b := range builders {
		lists[name] = b.Build()
	}
	m.lists.Store(&lists)
	return nil
}

// managedList is a rule's view of one managed list: it reads the contents
// in force at each lookup.
type managedList struct {
	name string
	from *ManagedLists
}

func (l managedList) Name() string { return l.name }

func (l managedList) Lookup(tn string, now time.Time) (numbers.Match, bool) {
	if l.from == nil {
		return numbers.Match{}, false
	}
	p := l.from.lists.Load()
	if p == nil {
		return numbers.Match{}, false
	}
	if nl := (*p)[l.name]; nl != nil {
		return nl.Lookup(tn, now)
	}
	return numbers.Match{}, false
}

// ManagedListNames are the managed lists the policy declares, in file
// order (none for a nil Engine: no policy).
func (e *Engine) ManagedListNames() []string {
	if e == nil {
		return nil
	}
	return e.managed
}
