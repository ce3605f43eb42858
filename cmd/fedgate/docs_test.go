package main

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/fedgate/fedgate/config"
)

// docFiles are the pages whose commands, links and configuration snippets
// are checked: README.md and everything in docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(files) < 10 {
		t.Fatalf("docs: %v %v", files, err)
	}
	return append([]string{"../../README.md"}, files...)
}

// codeBlock is a fenced block of a page.
type codeBlock struct {
	lang  string
	lines []string
	line  int // line of the opening fence
}

// readPage returns a page's fenced code blocks and its prose lines (inline
// code spans are read from those).
func readPage(t *testing.T, path string) (blocks []codeBlock, prose []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var cur *codeBlock
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		trimmed := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(trimmed, "```") && cur == nil:
			cur = &codeBlock{lang: strings.TrimPrefix(trimmed, "```"), line: n}
		case strings.HasPrefix(trimmed, "```"):
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, l)
		default:
			prose = append(prose, l)
		}
	}
	return blocks, prose
}

// commandLines returns the shell command lines of a page: every line of sh
// blocks (continuations joined), "$ " lines of console blocks and of plain
// blocks that show a session, the lines of plain blocks that are usage
// synopses, and inline code spans.
func commandLines(blocks []codeBlock, prose []string) []string {
	var out []string
	for _, b := range blocks {
		session := slices.ContainsFunc(b.lines, func(l string) bool { return strings.HasPrefix(l, "$ ") })
		switch {
		case b.lang == "sh" || b.lang == "bash":
			joined := strings.ReplaceAll(strings.Join(b.lines, "\n"), "\\\n", " ")
			out = append(out, strings.Split(joined, "\n")...)
		case b.lang == "console" || (b.lang == "" && session):
			for _, l := range b.lines {
				if c, ok := strings.CutPrefix(l, "$ "); ok {
					out = append(out, c)
				}
			}
		case b.lang == "":
			out = append(out, b.lines...) // usage synopses
		}
	}
	span := regexp.MustCompile("`([^`]+)`")
	for _, l := range prose {
		for _, m := range span.FindAllStringSubmatch(l, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// flagsOf lists the flags "fedgate NAME -h" describes.
func flagsOf(t *testing.T, name string) map[string]bool {
	t.Helper()
	code, out, _ := runCLI(name, "-h")
	if code != exitOK {
		t.Fatalf("fedgate %s -h: exit %d", name, code)
	}
	flags := map[string]bool{"h": true, "help": true}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`).FindAllStringSubmatch(out, -1) {
		flags[m[1]] = true
	}
	return flags
}

// TestDocumentedCommands: every "fedgate <command> -flag ..." shown in
// README.md and docs/ names a command that exists and only flags that
// command has ("fedgate <command> -h" lists them), so the documentation
// cannot drift from the binary. The commands themselves are run by the
// command tests (check-config on the example, resolve, selftest, keygen,
// egress-ca, run).
func TestDocumentedCommands(t *testing.T) {
	known := map[string]map[string]bool{}
	for _, c := range commands() {
		known[c.name] = flagsOf(t, c.name)
	}
	invocation := regexp.MustCompile(`(?:^|[\s/(])fedgate\s+([a-z][a-z-]*)((?:\s+[^\s|;&<>#]+)*)`)
	checked := 0
	for _, file := range docFiles(t) {
		blocks, prose := readPage(t, file)
		for _, line := range commandLines(blocks, prose) {
			for _, m := range invocation.FindAllStringSubmatch(line, -1) {
				name, args := m[1], strings.Fields(m[2])
				flags, ok := known[name]
				if !ok {
					if name == "help" {
						continue
					}
					// Prose such as "fedgate is ..." inside a code span is
					// not an invocation; a command-shaped one is.
					if strings.Contains(line, " -") || strings.HasPrefix(strings.TrimSpace(line), "fedgate") && len(args) > 0 {
						t.Errorf("%s: %q uses unknown command %q", filepath.Base(file), line, name)
					}
					continue
				}
				checked++
				for _, a := range args {
					a = strings.Trim(a, "[]()")
					if !strings.HasPrefix(a, "-") || a == "-" {
						continue
					}
					flag, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
					if !flags[flag] {
						t.Errorf("%s: %q: fedgate %s has no flag -%s", filepath.Base(file), strings.TrimSpace(line), name, flag)
					}
				}
			}
		}
	}
	if checked < 30 {
		t.Fatalf("only %d documented invocations found: is the extraction broken?", checked)
	}
}

// TestDocumentedMakeTargetsAndScripts: "make X" targets and scripts/ files
// the pages mention exist.
func TestDocumentedMakeTargetsAndScripts(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	target := regexp.MustCompile(`(?:^|[\s(=])make ([a-z]+)\b`)
	script := regexp.MustCompile(`\b(scripts/[a-z0-9_.-]+|\.ci/[a-z0-9_.-]+|packaging/[a-z0-9_./-]+[a-z])`)
	for _, file := range docFiles(t) {
		data, _ := os.ReadFile(file)
		for _, line := range commandLines(readPage(t, file)) {
			for _, m := range target.FindAllStringSubmatch(line, -1) {
				if !regexp.MustCompile(`(?m)^` + m[1] + `:`).Match(makefile) {
					t.Errorf("%s mentions make %s, which the Makefile lacks", filepath.Base(file), m[1])
				}
			}
		}
		for _, m := range script.FindAllStringSubmatch(string(data), -1) {
			if _, err := os.Stat(filepath.Join("../..", m[1])); err != nil {
				t.Errorf("%s mentions %s: %v", filepath.Base(file), m[1], err)
			}
		}
	}
}

// slug is GitHub's anchor for a heading.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the heading anchors of a page.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	blocks, prose := readPage(t, path)
	_ = blocks
	out := map[string]bool{}
	for _, l := range prose {
		if h, ok := strings.CutPrefix(strings.TrimLeft(l, "#"), " "); ok && strings.HasPrefix(l, "#") {
			out[slug(h)] = true
		}
	}
	return out
}

// TestDocumentLinks: every relative link of README.md and docs/ points at
// a file that exists and, with a #fragment, at one of its headings.
func TestDocumentLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, file := range docFiles(t) {
		_, prose := readPage(t, file)
		for _, l := range prose {
			for _, m := range link.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, frag, _ := strings.Cut(target, "#")
				resolved := file
				if path != "" {
					resolved = filepath.Join(filepath.Dir(file), path)
				}
				if _, err := os.Stat(resolved); err != nil {
					t.Errorf("%s links to %s: %v", filepath.Base(file), target, err)
					continue
				}
				if frag != "" && strings.HasSuffix(resolved, ".md") && !anchors(t, resolved)[frag] {
					t.Errorf("%s links to %s: no heading with anchor #%s", filepath.Base(file), target, frag)
				}
			}
		}
	}
}

// TestDocumentedConfiguration: every fedgate TOML snippet in README.md and
// docs/ uses only keys the configuration schema has, in the right tables.
// Snippets of other programs (continuwuity's [global]) are recognised by
// their first key and skipped.
func TestDocumentedConfiguration(t *testing.T) {
	schema := reflect.TypeFor[config.Config]()
	checked := 0
	for _, file := range docFiles(t) {
		blocks, _ := readPage(t, file)
		for _, b := range blocks {
			if b.lang != "toml" {
				continue
			}
			var doc map[string]any
			if err := toml.Unmarshal([]byte(strings.Join(b.lines, "\n")), &doc); err != nil {
				t.Errorf("%s:%d: TOML does not parse: %v", filepath.Base(file), b.line, err)
				continue
			}
			if first := firstKey(b.lines); first != "" && !hasKey(schema, first) {
				continue // another program's configuration
			}
			checked++
			for _, p := range unknownKeys("", doc, schema) {
				t.Errorf("%s:%d: %s is not a configuration key", filepath.Base(file), b.line, p)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d fedgate TOML snippets found", checked)
	}
}

// firstKey is the first table or key of a snippet.
func firstKey(lines []string) string {
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		l = strings.Trim(l, "[]")
		k, _, _ := strings.Cut(l, "=")
		k, _, _ = strings.Cut(strings.TrimSpace(k), ".")
		return strings.TrimSpace(k)
	}
	return ""
}

func tomlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if k := f.Tag.Get("toml"); k != "" && k != "-" {
			out[k] = f
		}
	}
	return out
}

func hasKey(t reflect.Type, key string) bool {
	_, ok := tomlFields(t)[key]
	return ok
}

// unknownKeys lists the keys of doc that type t does not have.
func unknownKeys(prefix string, doc map[string]any, t reflect.Type) []string {
	var out []string
	fields := tomlFields(t)
	for k, v := range doc {
		f, ok := fields[k]
		if !ok {
			out = append(out, prefix+k)
			continue
		}
		ft := f.Type
		switch {
		case ft == reflect.TypeFor[config.Limit]():
		case ft.Kind() == reflect.Struct:
			if m, ok := v.(map[string]any); ok {
				out = append(out, unknownKeys(prefix+k+".", m, ft)...)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if list, ok := v.([]any); ok {
				for _, e := range list {
					if m, ok := e.(map[string]any); ok {
						out = append(out, unknownKeys(prefix+k+"[].", m, ft.Elem())...)
					}
				}
			}
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct && ft.Elem() != reflect.TypeFor[config.Limit]():
			if m, ok := v.(map[string]any); ok {
				for name, e := range m {
					if em, ok := e.(map[string]any); ok {
						out = append(out, unknownKeys(prefix+k+"."+name+".", em, ft.Elem())...)
					}
				}
			}
		}
	}
	return out
}
