package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// source remembers where each key of the file was written.
type source struct {
	lines    map[string]int // dotted path ("a.b", "a.b[2]", "a.c[0].d") -> line
	newlines []int          // offsets of every '\n', to turn offsets into lines
}

// line finds the line of key or of the nearest enclosing key.
func (s *source) line(key string) int {
	for key != "" {
		if l, ok := s.lines[key]; ok {
			return l
		}
		key = parentKey(key)
	}
	return 1
}

// parentKey strips the last ".name" or "[i]" from a dotted path.
func parentKey(key string) string {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
	}
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

// joinKey appends a key part, quoting parts that are not bare keys.
func joinKey(prefix, part string) string {
	if !isBareKey(part) {
		part = strconv.Quote(part)
	}
	if prefix == "" {
		return part
	}
	return prefix + "." + part
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')) {
			return false
		}
	}
	return true
}

// indexPositions walks the syntax tree of a file that already parsed
// successfully and records the line of every key, table and array element.
func indexPositions(data []byte) *source {
	s := &source{lines: map[string]int{}}
	for i, c := range data {
		if c == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	p := unstable.Parser{}
	p.Reset(data)
	arrayTables := map[string]int{}
	// current maps an array of tables (resolved path) to its last element:
	// after "[[servers]]" twice, "servers" -> "servers[1]", so that a
	// following "[servers.upstream]" is recorded as servers[1].upstream.
	current := map[string]string{}
	prefix := ""
	for p.NextExpression() {
		expr := p.Expression()
		switch expr.Kind {
		case unstable.Table:
			prefix = headerPath(expr.Key(), current, false)
			s.record(prefix, expr)
		case unstable.ArrayTable:
			base := headerPath(expr.Key(), current, true)
			i := arrayTables[base]
			arrayTables[base] = i + 1
			prefix = base + "[" + strconv.Itoa(i) + "]"
			current[base] = prefix
			s.record(base, expr)
			s.record(prefix, expr)
		case unstable.KeyValue:
			s.keyValue(prefix, &p, expr)
		}
	}
	return s
}

// headerPath is the path of a table header, with every part that names an
// array of tables replaced by its current element; for an array table
// header ("[[servers]]") the last part is the array itself and stays.
func headerPath(it unstable.Iterator, current map[string]string, array bool) string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	path := ""
	for i, part := range parts {
		path = joinKey(path, part)
		if el, ok := current[path]; ok && !(array && i == len(parts)-1) {
			path = el
		}
	}
	return path
}

func (s *source) record(path string, n *unstable.Node) {
	if _, ok := s.lines[path]; ok {
		return
	}
	raw := n.Raw
	if raw.Length == 0 {
		// Table nodes carry their range on the key parts.
		if k := n.Child(); k != nil {
			raw = k.Raw
		}
	}
	if raw.Length == 0 && raw.Offset == 0 {
		return
	}
	// Line = 1 + newlines before the offset; a binary search keeps large
	// files linear instead of rescanning from the start for every key.
	s.lines[path] = 1 + sort.SearchInts(s.newlines, int(raw.Offset))
}

func (s *source) keyValue(prefix string, p *unstable.Parser, kv *unstable.Node) {
	it := kv.Key()
	path := prefix
	var first *unstable.Node
	for it.Next() {
		if first == nil {
			first = it.Node()
		}
		path = joinKey(path, string(it.Node().Data))
		if first != nil {
			s.record(path, first)
		}
	}
	s.value(path, p, kv.Value())
}

func (s *source) value(path string, p *unstable.Parser, v *unstable.Node) {
	switch v.Kind {
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); i++ {
			el := it.Node()
			elPath := path + "[" + strconv.Itoa(i) + "]"
			s.record(elPath, el)
			s.value(elPath, p, el)
		}
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			s.keyValue(path, p, it.Node())
		}
	}
}

// decoder converts the generic tree go-toml produced into the typed Config,
// collecting a problem for every unknown key and every type mismatch instead
// of stopping at the first.
type decoder struct {
	cfg      *Config
	problems Problems
	failed   map[string]bool // keys that did not decode; validation skips them
}

func (d *decoder) fail(key, format string, args ...any) {
	d.problems = append(d.problems, d.cfg.Errorf(key, format, args...))
	if d.failed == nil {
		d.failed = map[string]bool{}
	}
	d.failed[key] = true
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// defaulter is an element of an array of tables ([[servers]]) that starts
// from defaults rather than from its zero value.
type defaulter interface{ setDefaults() }

func (d *decoder) decode(key string, v any, rv reflect.Value) {
	if rv.CanAddr() && rv.Addr().Type().Implements(textUnmarshalerType) {
		d.decodeText(key, v, rv)
		return
	}
	switch rv.Kind() {
	case reflect.Struct:
		d.decodeStruct(key, v, rv)
	case reflect.Map:
		d.decodeMap(key, v, rv)
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			d.fail(key, "expected an array, got %s", describe(v))
			return
		}
		out := reflect.MakeSlice(rv.Type(), len(arr), len(arr))
		for i, el := range arr {
			if def, ok := out.Index(i).Addr().Interface().(defaulter); ok {
				def.setDefaults()
			}
			d.decode(key+"["+strconv.Itoa(i)+"]", el, out.Index(i))
		}
		rv.Set(out)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.fail(key, "expected a string, got %s", describe(v))
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.fail(key, "expected true or false, got %s", describe(v))
			return
		}
		rv.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			d.fail(key, "expected an integer, got %s", describe(v))
			return
		}
		if rv.OverflowInt(n) {
			d.fail(key, "integer %d out of range", n)
			return
		}
		rv.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			rv.SetFloat(n)
		case int64:
			rv.SetFloat(float64(n))
		default:
			d.fail(key, "expected a number, got %s", describe(v))
		}
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", rv.Type(), key))
	}
}

func (d *decoder) decodeText(key string, v any, rv reflect.Value) {
	var text string
	switch x := v.(type) {
	case string:
		text = x
	case int64:
		// Sizes may be plain integers.
		if rv.Type() != reflect.TypeFor[ByteSize]() {
			d.fail(key, "expected a string, got %s", describe(v))
			return
		}
		text = strconv.FormatInt(x, 10)
	default:
		d.fail(key, "expected a string, got %s", describe(v))
		return
	}
	if err := rv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(text)); err != nil {
		d.fail(key, "%v", err)
	}
}

func (d *decoder) decodeStruct(key string, v any, rv reflect.Value) {
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(key, "expected a table, got %s", describe(v))
		return
	}
	fields := map[string]int{}
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		if tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	for _, k := range d.sortedKeys(key, m) {
		sub := joinKey(key, k)
		i, ok := fields[k]
		if !ok {
			d.fail(sub, "unknown key%s", suggest(k, fields))
			continue
		}
		d.decode(sub, m[k], rv.Field(i))
	}
}

func (d *decoder) decodeMap(key string, v any, rv reflect.Value) {
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(key, "expected a table, got %s", describe(v))
		return
	}
	if rv.Type().Key().Kind() != reflect.String {
		panic("config: map keys must be strings")
	}
	out := reflect.MakeMapWithSize(rv.Type(), len(m))
	for _, k := range d.sortedKeys(key, m) {
		el := reflect.New(rv.Type().Elem()).Elem()
		d.decode(joinKey(key, k), m[k], el)
		out.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), el)
	}
	rv.Set(out)
}

// sortedKeys orders a table's keys by their line so problems come out in
// file order.
func (d *decoder) sortedKeys(prefix string, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := d.cfg.Line(joinKey(prefix, keys[i])), d.cfg.Line(joinKey(prefix, keys[j]))
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// suggest names a known key close to an unknown one.
func suggest(k string, fields map[string]int) string {
	best, bestDist := "", 3
	for f := range fields {
		if dist := editDistance(k, f); dist < bestDist || (dist == bestDist && f < best && best != "") {
			best, bestDist = f, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// syntaxProblem converts a go-toml error into a located Problem.
func syntaxProblem(file string, err error) *Problem {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		return &Problem{File: file, Line: line, Msg: "TOML syntax: " + msg}
	}
	return &Problem{File: file, Line: 1, Msg: "TOML syntax: " + err.Error()}
}
