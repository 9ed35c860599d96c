package haip_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/haipfabric/haipfabric/haip"
)

var updateSchemas = flag.Bool("update-schemas", false, "rewrite haip/schema from GenerateSchemas")

// The committed schemas are what GenerateSchemas makes from the codec's
// tables (go test ./haip -run TestSchemaFiles -update-schemas rewrites
// them), and the embedded copy the edge serves is the committed one.
func TestSchemaFilesUpToDate(t *testing.T) {
	files, err := haip.GenerateSchemas()
	if err != nil {
		t.Fatal(err)
	}
	if *updateSchemas {
		if err := os.RemoveAll("schema"); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			p := filepath.Join("schema", filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	onDisk := map[string]bool{}
	err = filepath.WalkDir("schema", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		onDisk[filepath.ToSlash(strings.TrimPrefix(p, "schema"+string(filepath.Separator)))] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("schema", filepath.FromSlash(name)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("haip/schema/%s differs from what GenerateSchemas makes (go test ./haip -run TestSchemaFiles -update-schemas)", name)
		}
		embedded, err := fs.ReadFile(haip.SchemaFS(), name)
		if err != nil || !bytes.Equal(embedded, got) {
			t.Errorf("embedded %s differs from the file", name)
		}
		delete(onDisk, name)
	}
	for name := range onDisk {
		t.Errorf("haip/schema/%s is not generated: remove it", name)
	}
}

// compileEnvelopeSchema compiles the embedded envelope schema (with the
// payload schemas it refers to) with a maintained 2020-12 validator.
func compileEnvelopeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	err := fs.WalkDir(haip.SchemaFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(haip.SchemaFS(), p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		return c.AddResource(schemaURL(p), doc)
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(schemaURL("envelope.json"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func schemaURL(p string) string { return "https://edge.invalid" + haip.SchemaPath + path.Clean(p) }

// seed is one frame of the fuzz corpora.
type seed struct {
	name string
	data []byte
}

// corpusSeeds returns the frames FuzzDecode and FuzzBinaryForms start
// from: the seeds they add in code and the committed corpus files.
func corpusSeeds(t *testing.T) []seed {
	t.Helper()
	var out []seed
	for _, tc := range validFrames() {
		out = append(out, seed{"valid/" + tc.name, []byte(tc.frame)})
	}
	for _, tc := range invalidFrames() {
		out = append(out, seed{"invalid/" + tc.name, []byte(tc.frame)})
	}
	for _, dir := range []string{"FuzzDecode", "FuzzBinaryForms"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join("testdata", "fuzz", dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
				t.Fatalf("%s/%s: not a go test fuzz v1 file", dir, e.Name())
			}
			s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
			if err != nil {
				t.Fatalf("%s/%s: %v", dir, e.Name(), err)
			}
			out = append(out, seed{dir + "/" + e.Name(), []byte(s)})
		}
	}
	return out
}

// outsideSchema are the corpus frames whose verdict JSON Schema cannot
// express, with why (see the comment at the top of haip/schema.go).
var outsideSchema = map[string]string{
	"invalid/pv 1.0": "an integer written with a fraction: JSON Schema's integer type takes 1.0",
}

// Every corpus frame Decode accepts validates against the published
// schema, and every one it refuses does not. (Frames with duplicate
// member names are outside the schema, which describes I-JSON, and so are
// those listed in outsideSchema: they are listed, not compared.)
func TestSchemaAgreesWithDecode(t *testing.T) {
	s := compileEnvelopeSchema(t)
	var compared, accepted int
	var dups []string
	for _, sd := range corpusSeeds(t) {
		if hasDuplicateNames(sd.data) || outsideSchema[sd.name] != "" {
			dups = append(dups, sd.name)
			continue
		}
		_, derr := haip.Decode(sd.data)
		verr := validate(s, sd.data)
		compared++
		switch {
		case derr == nil && verr != nil:
			t.Errorf("%s: Decode accepts it, the schema refuses it: %v\n%s", sd.name, verr, sd.data)
		case derr != nil && verr == nil:
			t.Errorf("%s: Decode refuses it (%v), the schema accepts it\n%s", sd.name, derr, sd.data)
		case derr == nil:
			accepted++
		}
	}
	if compared < 50 || accepted < 20 {
		t.Fatalf("only %d frames compared (%d accepted)", compared, accepted)
	}
	t.Logf("%d frames compared (%d accepted); left out: %v", compared, accepted, dups)
}

// validate validates data as an I-JSON document (so UTF-8).
func validate(s *jsonschema.Schema, data []byte) error {
	if !json.Valid(data) {
		return errors.New("not JSON")
	}
	if !utf8.Valid(data) {
		return errors.New("not UTF-8, so not I-JSON")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// hasDuplicateNames reports whether some object in data names a member
// twice (data that is not JSON has none).
func hasDuplicateNames(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj   bool
		names map[string]bool
		key   bool // the next string is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.obj {
					top.key = true
				}
				stack = append(stack, &frame{obj: v == '{', names: map[string]bool{}, key: v == '{'})
				continue
			case '}', ']':
				stack = stack[:len(stack)-1]
				continue
			}
		case string:
			if top != nil && top.obj && top.key {
				if top.names[v] {
					return true
				}
				top.names[v] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.obj {
			top.key = true
		}
	}
}

// The schema files name every type, and each payload file has a strict
// variant unless the payload is open with no fields.
func TestSchemaFilesList(t *testing.T) {
	var names []string
	err := fs.WalkDir(haip.SchemaFS(), "payloads", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimSuffix(path.Base(p), ".json"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, ty := range haip.AllTypes() {
		want = append(want, string(ty))
	}
	sort.Strings(names)
	sort.Strings(want)
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("payload schemas %v, want %v", names, want)
	}
}

// tsTypesFile is the TypeScript client's view of the published schemas,
// which its payload types are checked against when it compiles.
const tsTypesFile = "../clients/ts/src/schema.gen.ts"

// The TypeScript client's schema.gen.ts says what the published schema
// files say: the event types, the channels, and per payload its fields
// and which are required (go test ./haip -run TestSchemaTypeScript
// -update-schemas rewrites it).
func TestSchemaTypeScript(t *testing.T) {
	read := func(p string) map[string]any {
		t.Helper()
		b, err := fs.ReadFile(haip.SchemaFS(), p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	union := func(vals []string) string {
		if len(vals) == 0 {
			return "never"
		}
		sort.Strings(vals)
		q := make([]string, len(vals))
		for i, v := range vals {
			q[i] = strconv.Quote(v)
		}
		return strings.Join(q, " | ")
	}
	strs := func(v any) []string {
		var out []string
		for _, x := range v.([]any) {
			out = append(out, x.(string))
		}
		return out
	}
	env := read("envelope.json")
	props := env["properties"].(map[string]any)
	types := strs(props["type"].(map[string]any)["enum"])
	var b strings.Builder
	b.WriteString("// The published schemas (haip/schema) as TypeScript types, which\n" +
		"// types.ts checks its own against when it compiles. Generated by\n" +
		"// go test ./haip -run TestSchemaTypeScript -update-schemas: do not edit.\n\n")
	b.WriteString("/** The event types of envelope.json. */\nexport type SchemaEventType = " + union(types) + ";\n\n")
	b.WriteString("/** The channels of envelope.json. */\nexport type SchemaChannel = " + union(strs(props["channel"].(map[string]any)["enum"])) + ";\n\n")
	b.WriteString("/** Per payload: open (any field allowed), its fields, and the required ones. */\nexport interface SchemaPayloads {\n")
	sorted := append([]string(nil), types...)
	sort.Strings(sorted)
	for _, ty := range sorted {
		p := read("payloads/" + ty + ".json")
		var fields, required []string
		if pp, ok := p["properties"].(map[string]any); ok {
			for k := range pp {
				fields = append(fields, k)
			}
		}
		if r, ok := p["required"]; ok {
			required = strs(r)
		}
		open := len(fields) == 0
		fmt.Fprintf(&b, "  %s: { open: %t; fields: %s; required: %s };\n", ty, open, union(fields), union(required))
	}
	b.WriteString("}\n")
	want := []byte(b.String())
	if *updateSchemas {
		if err := os.WriteFile(tsTypesFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(tsTypesFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s is not what the schemas say (go test ./haip -run TestSchemaTypeScript -update-schemas)", tsTypesFile)
	}
}
