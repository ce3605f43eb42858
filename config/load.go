package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/pelletier/go-toml/v2"
)

// Load reads, decodes, completes and validates the file at path. On an
// invalid file the error is a [Problems] listing everything wrong with it.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(abs, data)
}

// Parse is [Load] for a file already in memory; file names it in problems
// and its folder anchors relative paths.
func Parse(file string, data []byte) (*Config, error) {
	var generic map[string]any
	if err := toml.Unmarshal(data, &generic); err != nil {
		return nil, Problems{syntaxProblem(file, err)}
	}
	c := Default()
	c.File = file
	c.src = indexPositions(data)
	d := &decoder{cfg: &c}
	d.decode("", generic, reflect.ValueOf(&c).Elem())
	problems := d.problems
	c.derive(filepath.Dir(file))
	problems = append(problems, c.validate(d.failed)...)
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, problems
	}
	return &c, nil
}
