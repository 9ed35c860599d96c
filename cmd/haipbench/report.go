package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// Result is one scenario's outcome, printed as a table and written as JSON.
type Result struct {
	Scenario string         `json:"scenario"`
	Mode     string         `json:"mode"`
	Params   map[string]any `json:"params"`
	Rows     []Row          `json:"rows"`
	Notes    []string       `json:"notes,omitempty"`
}

// Row is one figure. Ratio, when set, is Value divided by the raw
// JetStream ordered-consumer read rate measured earlier in the same run.
type Row struct {
	Metric string   `json:"metric"`
	Value  float64  `json:"value"`
	Unit   string   `json:"unit"`
	Ratio  *float64 `json:"ratio_to_raw_ordered_consumer,omitempty"`
}

func (r *Result) add(metric string, v float64, unit string) {
	r.Rows = append(r.Rows, Row{Metric: metric, Value: v, Unit: unit})
}

// addRatio adds a rate row with its ratio to the baseline read rate.
func (r *Result) addRatio(metric string, v float64, unit string, base float64) {
	row := Row{Metric: metric, Value: v, Unit: unit}
	if base > 0 {
		q := v / base
		row.Ratio = &q
	}
	r.Rows = append(r.Rows, row)
}

func (r *Result) note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }

// get returns a row's value, or -1 when absent.
func (r *Result) get(metric string) float64 {
	for _, row := range r.Rows {
		if row.Metric == metric {
			return row.Value
		}
	}
	return -1
}

func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s (%s)", r.Scenario, r.Mode)
	keys := make([]string, 0, len(r.Params))
	for k, v := range r.Params {
		keys = append(keys, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(keys)
	fmt.Fprintf(w, " %s\n", strings.Join(keys, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\tvalue\tunit\t÷ raw ordered consumer\t")
	for _, row := range r.Rows {
		ratio := ""
		if row.Ratio != nil {
			ratio = fmt.Sprintf("%.3f", *row.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", row.Metric, formatValue(row.Value), row.Unit, ratio)
	}
	_ = tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func formatValue(v float64) string {
	switch {
	case v >= 1000 || v == float64(int64(v)):
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func writeJSON(path string, results []*Result) error {
	data, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}
