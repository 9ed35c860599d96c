// Package logging builds the process logger of the fabric's commands from
// LOG_LEVEL and LOG_FORMAT.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a slog logger writing to w. level is debug, info, warn or
// error; format is text or json.
func New(level, format string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("LOG_FORMAT %q: want text or json", format)
}
