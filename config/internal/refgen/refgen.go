// Package refgen writes docs/configuration.md, the reference of every
// configuration key, from the schema itself: the key names and types come
// from the config structs (by reflection), the defaults from
// [config.Default] (and, for defaults derived from other keys, from a
// configuration loaded with nothing but the required keys), and the
// meaning from the doc comments on the struct fields, read from config's
// Go source. A field whose doc comment says "needs a restart" is reported
// as needing one; every other key applies on reload.
//
// It is a development tool: "go generate ./config/" runs it, and a test in
// config fails when the committed page differs from what it produces. It
// is not part of the fedgate binary.
package refgen

import (
	"bytes"
	"encoding"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedgate/fedgate/config"
)

// RestartMarker is the phrase that marks a key as needing a restart.
const RestartMarker = "needs a restart"

// configDir is the folder the example configuration pretends to live in,
// so that derived paths can be shown relative to the configuration file.
const configDir = "/CONFIG_DIR"

// minimal is the smallest valid configuration: derived defaults are read
// from it, those of a [[servers]] entry from its one entry.
const minimal = "server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[keys]\ngenerate = true\n" +
	"[[servers]]\nserver_name = \"" + entryName + "\"\n[servers.upstream]\nurl = \"http://127.0.0.1:8009\"\n[servers.keys]\ngenerate = true\n"

// entryName is the server name of minimal's [[servers]] entry; defaults
// derived from it are shown with "<server_name>" in its place.
const entryName = "entry.example"

// docs holds what the Go source says about config's types.
type docs struct {
	types  map[string]string            // type name -> doc comment
	fields map[string]map[string]string // type name -> field name -> doc comment
}

// readDocs parses the non-test Go files in dir.
func readDocs(dir string) (*docs, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	d := &docs{types: map[string]string{}, fields: map[string]map[string]string{}}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				d.types[ts.Name.Name] = text(doc)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				fields := map[string]string{}
				for _, fl := range st.Fields.List {
					doc := text(fl.Doc)
					if doc == "" {
						doc = text(fl.Comment)
					}
					for _, n := range fl.Names {
						fields[n.Name] = doc
					}
				}
				d.fields[ts.Name.Name] = fields
			}
		}
	}
	return d, nil
}

// text turns a comment group into one paragraph.
func text(cg *ast.CommentGroup) string {
	if cg == nil {
		return ""
	}
	return strings.Join(strings.Fields(cg.Text()), " ")
}

// row is one key of the reference.
type row struct {
	key, typ, def, applies, meaning string
}

// section is one TOML table of the reference.
type section struct {
	header string // "[outbound]", "[[keys.old]]", "" for the top level
	intro  string
	rows   []row
}

// generator walks the schema.
type generator struct {
	docs *docs
	// elems holds the defaults of the array-of-tables elements that have
	// some (a [[servers]] entry starts from the top-level defaults).
	elems    map[reflect.Type]reflect.Value
	sections []*section
	problems []string
}

// Markdown returns docs/configuration.md for the config package whose
// source is in configSrc.
func Markdown(configSrc string) ([]byte, error) {
	d, err := readDocs(configSrc)
	if err != nil {
		return nil, err
	}
	derived, err := config.Parse(filepath.Join(configDir, "gateway.toml"), []byte(minimal))
	if err != nil {
		return nil, fmt.Errorf("loading the minimal configuration: %w", err)
	}
	g := &generator{docs: d, elems: map[reflect.Type]reflect.Value{
		reflect.TypeFor[config.HostedServer](): entryDefaults(derived.Servers[0]),
	}}
	def := config.Default()
	g.walk(&section{}, "", reflect.ValueOf(def), reflect.ValueOf(*derived), false)
	if len(g.problems) > 0 {
		return nil, fmt.Errorf("the configuration schema is not fully documented:\n  %s", strings.Join(g.problems, "\n  "))
	}
	return g.render(), nil
}

var (
	typDuration = reflect.TypeFor[config.Duration]()
	typSize     = reflect.TypeFor[config.ByteSize]()
	typRate     = reflect.TypeFor[config.Rate]()
	typLimit    = reflect.TypeFor[config.Limit]()
)

// walk adds the fields of the struct v (its defaults; derived holds the
// same struct after defaults derived from other keys) to sec, and a new
// section for each nested table. restart is inherited from a parent key.
func (g *generator) walk(sec *section, prefix string, v, derived reflect.Value, restart bool) {
	g.sections = append(g.sections, sec)
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("toml")
		if key == "" || key == "-" || !f.IsExported() {
			continue
		}
		full := strings.TrimPrefix(prefix+"."+key, ".")
		if entryKey, ok := strings.CutPrefix(full, "servers[]."); ok && config.TopLevelOnly(entryKey) {
			continue // a [[servers]] entry may not set it: documented at the top level only
		}
		doc := g.docs.fields[t.Name()][f.Name]
		if doc == "" && f.Type.Kind() == reflect.Struct && !isValueType(f.Type) {
			doc = g.docs.types[f.Type.Name()] // a section: its type's doc
		}
		if doc == "" {
			g.problems = append(g.problems, fmt.Sprintf("%s (field %s.%s) has no doc comment", full, t.Name(), f.Name))
		}
		r := row{key: key, typ: typeName(f.Type), meaning: operatorText(doc, t, g.docs), applies: "reload"}
		keyRestart := restart || strings.Contains(doc, RestartMarker)
		if keyRestart {
			r.applies = "restart"
		}
		fv, dv := v.Field(i), derived.Field(i)
		r.def = defaultText(fv, dv, doc)
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && !isValueType(ft):
			sub := &section{header: "[" + full + "]", intro: operatorText(doc, ft, g.docs)}
			if keyRestart && !strings.Contains(doc, RestartMarker) {
				sub.intro += " (" + RestartMarker + ")"
			}
			g.walk(sub, full, fv, dv, keyRestart)
			continue
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !isValueType(ft.Elem()):
			r.typ = "array of tables, `[[" + full + "]]` below"
			r.def = "none"
			sec.rows = append(sec.rows, r)
			sub := &section{header: "[[" + full + "]]", intro: operatorText(g.docs.types[ft.Elem().Name()], ft.Elem(), g.docs)}
			if e, ok := g.elems[ft.Elem()]; ok {
				g.walk(sub, full+"[]", e, e, keyRestart)
				continue
			}
			g.walkElem(sub, full+"[]", ft.Elem(), keyRestart)
			continue
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct && !isValueType(ft.Elem()):
			r.typ = "table of tables, `[" + full + ".\"<name>\"]` below"
			r.def = "none"
			sec.rows = append(sec.rows, r)
			sub := &section{header: "[" + full + ".\"<name>\"]", intro: operatorText(g.docs.types[ft.Elem().Name()], ft.Elem(), g.docs)}
			g.walkElem(sub, full+".<name>", ft.Elem(), keyRestart)
			continue
		}
		sec.rows = append(sec.rows, r)
	}
}

// walkElem documents the fields of an element type of an array of tables
// or of a table of tables: they have no defaults of their own.
func (g *generator) walkElem(sec *section, prefix string, t reflect.Type, restart bool) {
	zero := reflect.New(t).Elem()
	g.walk(sec, prefix, zero, zero, restart)
	for i := range sec.rows {
		if sec.rows[i].def != "required" {
			sec.rows[i].def = "none"
		}
	}
}

// entryDefaults is what a [[servers]] entry that sets only what minimal's
// entry sets ends up with, shown as its defaults: keys.generate back to
// its default (minimal sets it so that the entry is valid) and the
// entry's name, in derived paths and names, as "<server_name>".
func entryDefaults(e config.HostedServer) reflect.Value {
	e.Keys.Generate = config.Default().Keys.Generate
	v := reflect.New(reflect.TypeOf(e)).Elem()
	v.Set(reflect.ValueOf(e))
	replaceStrings(v, entryName, "<server_name>")
	return v
}

// replaceStrings replaces old with new in every string v holds (v must be
// settable); slices are copied first, so that no shared array changes.
func replaceStrings(v reflect.Value, old, new string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings.ReplaceAll(v.String(), old, new))
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				replaceStrings(v.Field(i), old, new)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			return
		}
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		for i := range c.Len() {
			replaceStrings(c.Index(i), old, new)
		}
		v.Set(c)
	}
}

// isValueType reports types written as one TOML value (a string or an
// inline table) rather than a table of their own.
func isValueType(t reflect.Type) bool {
	return t == typDuration || t == typSize || t == typRate || t == typLimit
}

// typeName describes a Go type in the terms of the TOML file.
func typeName(t reflect.Type) string {
	switch t {
	case typDuration:
		return "duration"
	case typSize:
		return "size"
	case typRate:
		return "rate"
	case typLimit:
		return "limit"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "list of " + plural(typeName(t.Elem()))
	case reflect.Map:
		return "table of " + plural(typeName(t.Elem()))
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return t.Kind().String()
}

func plural(s string) string {
	if strings.HasPrefix(s, "list of ") || strings.HasPrefix(s, "table of ") {
		return s
	}
	return s + "s"
}

// defaultText renders the default of one key: from Default(), or when
// that is empty, the value derived from other keys; "required" for the
// keys a configuration must set.
func defaultText(v, derived reflect.Value, doc string) string {
	if strings.Contains(doc, "(required") {
		return "required"
	}
	// Only paths and name lists are derived from other keys; the minimal
	// configuration sets keys.generate, whose default is still false.
	if k := v.Kind(); (k == reflect.String || k == reflect.Slice) && v.IsZero() && !derived.IsZero() {
		v = derived
	}
	return "`" + tomlValue(v) + "`"
}

// tomlValue renders a value as it would be written in the file.
func tomlValue(v reflect.Value) string {
	if v.Type() == typLimit {
		l := v.Interface().(config.Limit)
		r, _ := l.Rate.MarshalText()
		return fmt.Sprintf("{ rate = %q, burst = %d }", r, l.Burst)
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.String {
		switch {
		case v.Type() == typDuration && v.IsZero():
			return `""`
		case v.Type() == typDuration:
			return strconv.Quote(durationText(time.Duration(v.Interface().(config.Duration))))
		case v.Type() == typSize && v.IsZero():
			return "0"
		}
		b, _ := m.MarshalText()
		return strconv.Quote(string(b))
	}
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		if rel, ok := strings.CutPrefix(s, configDir+"/"); ok {
			s = rel
		}
		return strconv.Quote(s)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = tomlValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		if v.Len() == 0 {
			return "{}"
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = strconv.Quote(k.String()) + " = " + tomlValue(v.MapIndex(k))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	return fmt.Sprint(v.Interface())
}

// durationText writes d the way people write it in the file: "60s",
// "5m", "24h" rather than Go's "1m0s".
func durationText(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

var camelCase = regexp.MustCompile(`\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b`)

// operatorText rewrites a doc comment for operators: a leading Go field or
// type name, and CamelCase field names of t anywhere, become the TOML key.
func operatorText(doc string, t reflect.Type, d *docs) string {
	keys := map[string]string{}
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			f := t.Field(i)
			if k := f.Tag.Get("toml"); k != "" && k != "-" {
				keys[f.Name] = k
			}
		}
	}
	// "URL is the homeserver's ..." -> "The homeserver's ...";
	// "Outbound configures how ..." -> "Configures how ...".
	if first, rest, ok := strings.Cut(doc, " "); ok && rest != "" && (keys[first] != "" || first == t.Name() && t.Name() != "") {
		for _, verb := range []string{"is ", "are "} {
			if r, ok := strings.CutPrefix(rest, verb); ok && r != "" {
				rest = r
				break
			}
		}
		doc = strings.ToUpper(rest[:1]) + rest[1:]
	}
	doc = camelCase.ReplaceAllStringFunc(doc, func(w string) string {
		if k, ok := keys[w]; ok {
			return "`" + k + "`"
		}
		return w
	})
	return strings.ReplaceAll(doc, "|", `\|`)
}

// render writes the page.
func (g *generator) render() []byte {
	var b bytes.Buffer
	b.WriteString(preamble)
	for _, s := range g.sections {
		if s.header == "" {
			b.WriteString("## Top level\n\n")
		} else {
			fmt.Fprintf(&b, "## `%s`\n\n", s.header)
		}
		if s.intro != "" {
			b.WriteString(s.intro + "\n\n")
		}
		if len(s.rows) == 0 {
			continue
		}
		b.WriteString("| key | type | default | applies on | meaning |\n| --- | --- | --- | --- | --- |\n")
		for _, r := range s.rows {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.key, r.typ, r.def, r.applies, r.meaning)
		}
		b.WriteString("\n")
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

const preamble = `# Configuration reference

<!-- Generated from the configuration schema (config/*.go) by
"go generate ./config/". Do not edit: change the doc comments on the
config struct fields instead. A test fails when this page is out of date. -->

fedgate reads one TOML file (` + "`fedgate run -config FILE`" + `). This page lists every
key: its type, its default, whether a change applies on reload or needs a
restart, and what it means. ` + "`gateway.toml.example`" + ` shows every key in context,
and ` + "`fedgate check-config -config FILE -print`" + ` prints the effective value of every
key of a file.

- **Strict.** Unknown keys, wrong types and invalid values are errors; all
  of them are reported at once as ` + "`FILE:LINE: key: message`" + `.
- **Types.** A *duration* is a Go duration string (` + "`\"30s\"`, `\"5m\"`, `\"24h\"`" + `; ` + "`\"\"`" + `
  is zero). A *size* is a number of bytes or a string with a unit
  (` + "`\"64KiB\"`, `\"8MiB\"`" + `, powers of 1024; ` + "`\"500KB\"`" + `, powers of 1000). A *rate* is
  ` + "`\"N/s\"`, `\"N/m\"` or `\"N/h\"`" + ` (N may be fractional; ` + "`\"0\"`" + ` turns the limit off). A
  *limit* is an inline table ` + "`{ rate = \"10/s\", burst = 20 }`" + `: a token bucket.
- **Paths.** Relative paths are relative to the configuration file's
  folder. Defaults shown as relative paths (` + "`\"data/signing.key\"`" + `) follow
  ` + "`data_dir`" + `.
- **Reload.** "reload" keys take effect on SIGHUP (` + "`systemctl reload fedgate`" + `)
  or when fedgate notices the file changed (it checks every 2 s); requests
  in flight finish under the configuration they started with, and a file
  with any error is refused as a whole. "restart" keys are read once at
  start; fedgate logs a warning when a reload changes one.

`

// Generate writes the page for configSrc to out.
func Generate(configSrc, out string) error {
	md, err := Markdown(configSrc)
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(md, '\n'), 0o644)
}
