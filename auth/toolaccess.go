package auth

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ToolAccess says who may call which tool. It is read from one setting
// (TOOL_ACCESS) by the edge, which enforces it on the TOOL_CALLs clients
// send and filters the tool lists it answers, and by agents, which offer a
// model only the tools the run's user may call.
//
// The setting is a list of rules separated by ";", each PATTERN=WHO:
//
//   - PATTERN is a tool name (echo), a prefix ending with * (mcp_*), or *
//     (every tool). The most specific rule decides: an exact name over any
//     prefix, a longer prefix over a shorter one.
//   - WHO is a comma-separated list of roles (user, agent, admin), JWT
//     subjects (sub:alice), * (anyone) or none (no one).
//
// A tool no rule matches may be called by anyone: the empty setting keeps
// every tool open, as before rules existed. "*=admin;echo=*" opens echo to
// everyone and everything else to admins only.
//
// The zero ToolAccess allows everything. It is immutable and safe for
// concurrent use.
type ToolAccess struct {
	rules []toolRule // most specific first
}

type toolRule struct {
	pattern string // exact name, or prefix when prefix is set
	prefix  bool
	anyone  bool
	roles   map[Role]bool
	subs    map[string]bool
}

// ErrToolAccess is wrapped by every error ParseToolAccess returns.
var ErrToolAccess = errors.New("bad tool access rule")

// ParseToolAccess reads a TOOL_ACCESS setting (see ToolAccess). Every bad
// rule is reported, with its text.
func ParseToolAccess(s string) (ToolAccess, error) {
	var rules []toolRule
	var errs []error
	seen := map[string]bool{}
	for raw := range strings.SplitSeq(s, ";") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		pattern, who, ok := strings.Cut(raw, "=")
		pattern, who = strings.TrimSpace(pattern), strings.TrimSpace(who)
		if !ok || pattern == "" || who == "" {
			errs = append(errs, fmt.Errorf("%w %q: want PATTERN=WHO", ErrToolAccess, raw))
			continue
		}
		if seen[pattern] {
			errs = append(errs, fmt.Errorf("%w %q: pattern %s given twice", ErrToolAccess, raw, pattern))
			continue
		}
		seen[pattern] = true
		r := toolRule{pattern: pattern, roles: map[Role]bool{}, subs: map[string]bool{}}
		if strings.HasSuffix(pattern, "*") {
			r.pattern, r.prefix = strings.TrimSuffix(pattern, "*"), true
		}
		if strings.Contains(r.pattern, "*") {
			errs = append(errs, fmt.Errorf("%w %q: * may only end a pattern", ErrToolAccess, raw))
			continue
		}
		for w := range strings.SplitSeq(who, ",") {
			w = strings.TrimSpace(w)
			switch {
			case w == "*":
				r.anyone = true
			case w == "none":
			case strings.HasPrefix(w, "sub:") && len(w) > len("sub:"):
				r.subs[strings.TrimPrefix(w, "sub:")] = true
			case Role(w).Valid():
				r.roles[Role(w)] = true
			default:
				errs = append(errs, fmt.Errorf("%w %q: %q is not a role (user, agent, admin), sub:SUBJECT, * or none", ErrToolAccess, raw, w))
			}
		}
		rules = append(rules, r)
	}
	if len(errs) > 0 {
		return ToolAccess{}, errors.Join(errs...)
	}
	sort.SliceStable(rules, func(i, j int) bool {
		if rules[i].prefix != rules[j].prefix {
			return !rules[i].prefix
		}
		return len(rules[i].pattern) > len(rules[j].pattern)
	})
	return ToolAccess{rules: rules}, nil
}

// Allows reports whether the caller (its role and JWT subject) may call
// tool.
func (a ToolAccess) Allows(role Role, subject, tool string) bool {
	for _, r := range a.rules {
		if r.prefix && strings.HasPrefix(tool, r.pattern) || !r.prefix && tool == r.pattern {
			return r.anyone || r.roles[role] || r.subs[subject]
		}
	}
	return true
}

// AllowsIdentity is Allows for a verified identity.
func (a ToolAccess) AllowsIdentity(id Identity, tool string) bool {
	return a.Allows(id.Role, id.Subject, tool)
}

// Open reports whether the rules allow everyone every tool (no rules).
func (a ToolAccess) Open() bool { return len(a.rules) == 0 }

// UnmarshalText parses a TOOL_ACCESS setting (ParseToolAccess), so that a
// configuration struct can hold a ToolAccess read from the environment.
func (a *ToolAccess) UnmarshalText(text []byte) error {
	parsed, err := ParseToolAccess(string(text))
	if err != nil {
		return err
	}
	*a = parsed
	return nil
}
