package mcpbridge

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadCommand is wrapped by every refusal of a command line.
var ErrBadCommand = errors.New("bad command line")

// SplitCommand splits a command line into words the way a POSIX shell
// would, without running one: blanks separate words; 'single quotes' keep
// everything up to the next single quote; "double quotes" keep everything
// but \" \\ \$ \` (backslash escapes one of those); outside quotes a
// backslash keeps the next character. Nothing is expanded ($VAR, globs,
// ~). An unterminated quote or a trailing backslash is an error.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	const (
		plain = iota
		single
		double
	)
	state := plain
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch state {
		case single:
			if c == '\'' {
				state = plain
			} else {
				w.WriteRune(c)
			}
		case double:
			switch {
			case c == '"':
				state = plain
			case c == '\\' && i+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[i+1]):
				i++
				w.WriteRune(rs[i])
			default:
				w.WriteRune(c)
			}
		default:
			switch {
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				if inWord {
					words = append(words, w.String())
					w.Reset()
					inWord = false
				}
				continue
			case c == '\'':
				state = single
			case c == '"':
				state = double
			case c == '\\':
				if i+1 == len(rs) {
					return nil, fmt.Errorf("%w: %q ends with a backslash", ErrBadCommand, s)
				}
				i++
				w.WriteRune(rs[i])
			default:
				w.WriteRune(c)
			}
			inWord = true
		}
	}
	if state != plain {
		return nil, fmt.Errorf("%w: %q has an unterminated quote", ErrBadCommand, s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
