package edge

import (
	"fmt"

	"github.com/haipfabric/haipfabric/haip"
)

// typeSet is a set of HAIP event types: one bit per type of
// haip.AllTypes, and a map only for names outside them. (A map of the 22
// names cost about 1.7 KiB per connection.)
type typeSet struct {
	known uint64
	other map[haip.Type]bool
}

// typeBits numbers the known event types; it is never changed. More
// known types than bits is a programming error, caught at start (and by
// TestTypeSet), never a silent drop.
var typeBits = func() map[haip.Type]uint64 {
	all := haip.AllTypes()
	if len(all) > 64 {
		panic(fmt.Sprintf("edge: %d HAIP types do not fit typeSet's 64 bits", len(all)))
	}
	m := make(map[haip.Type]uint64, len(all))
	for i, t := range all {
		m[t] = 1 << i
	}
	return m
}()

func newTypeSet(ts []haip.Type) *typeSet {
	s := &typeSet{}
	for _, t := range ts {
		if b, ok := typeBits[t]; ok {
			s.known |= b
			continue
		}
		if s.other == nil {
			s.other = make(map[haip.Type]bool)
		}
		s.other[t] = true
	}
	return s
}

// has reports whether t is in the set; a nil set has nothing.
func (s *typeSet) has(t haip.Type) bool {
	if s == nil {
		return false
	}
	if b, ok := typeBits[t]; ok {
		return s.known&b != 0
	}
	return s.other[t]
}

func containsInt(xs []int, v int) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}
