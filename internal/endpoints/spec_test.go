package endpoints

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// specDir holds the spec's OpenAPI files, copied into the repository.
const specDir = "../../testdata/spec/server-server"

type openAPI struct {
	Servers []struct {
		Variables map[string]struct {
			Default string `yaml:"default"`
		} `yaml:"variables"`
	} `yaml:"servers"`
	Paths map[string]map[string]struct {
		OperationID string                `yaml:"operationId"`
		Security    []map[string][]string `yaml:"security"`
		Parameters  []struct {
			In   string `yaml:"in"`
			Name string `yaml:"name"`
		} `yaml:"parameters"`
	} `yaml:"paths"`
}

type specOp struct {
	method, path, operationID, file string
	auth                            Auth
	pathParams                      []string
}

func loadSpecOperations(t *testing.T) []specOp {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(specDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no OpenAPI files in %s: %v", specDir, err)
	}
	var ops []specOp
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc openAPI
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(doc.Servers) != 1 {
			t.Fatalf("%s: want one server entry, got %d", f, len(doc.Servers))
		}
		base := doc.Servers[0].Variables["basePath"].Default
		for path, methods := range doc.Paths {
			for method, op := range methods {
				if method == "parameters" {
					continue
				}
				o := specOp{
					method:      strings.ToUpper(method),
					path:        base + path,
					operationID: op.OperationID,
					file:        filepath.Base(f),
				}
				for _, sec := range op.Security {
					if _, ok := sec["signedRequest"]; ok {
						o.auth = AuthXMatrix
					}
					if _, ok := sec["accessToken"]; ok {
						// The spec marks timestamp_to_event "accessToken" by
						// mistake (DIGEST e, note *); servers use X-Matrix.
						o.auth = AuthXMatrix
					}
				}
				if o.operationID == "exchangeOpenIdToken" {
					o.auth = AuthOpenID
				}
				for _, p := range op.Parameters {
					if p.In == "path" {
						o.pathParams = append(o.pathParams, p.Name)
					}
				}
				ops = append(ops, o)
			}
		}
	}
	return ops
}

// TestTableMatchesSpec keeps the endpoint table and the spec's OpenAPI files
// in step: every spec operation has exactly one row with the same method,
// template and authentication, and every row that claims an operationId
// exists in the spec.
func TestTableMatchesSpec(t *testing.T) {
	ops := loadSpecOperations(t)
	byID := map[string]*Endpoint{}
	for i := range table {
		e := &table[i]
		if e.OperationID == "" {
			if !e.Removed {
				t.Errorf("%s %s has no operationId but is not marked Removed", e.Method, e.Path)
			}
			continue
		}
		if byID[e.OperationID] != nil {
			t.Errorf("operationId %s listed twice", e.OperationID)
		}
		byID[e.OperationID] = e
	}
	seen := map[string]bool{}
	for _, op := range ops {
		seen[op.operationID] = true
		e := byID[op.operationID]
		if e == nil {
			t.Errorf("%s: %s %s (%s) is missing from the endpoint table", op.file, op.method, op.path, op.operationID)
			continue
		}
		if e.Method != op.method || e.Path != op.path {
			t.Errorf("%s: table has %s %s, spec has %s %s", op.operationID, e.Method, e.Path, op.method, op.path)
		}
		if e.Auth != op.auth {
			t.Errorf("%s: table auth %v, spec auth %v", op.operationID, e.Auth, op.auth)
		}
		for _, p := range op.pathParams {
			if !strings.Contains(e.Path, "{"+p+"}") {
				t.Errorf("%s: spec path parameter %s not in template %s", op.operationID, p, e.Path)
			}
		}
		if e.Removed {
			t.Errorf("%s is in the current spec but marked Removed", op.operationID)
		}
	}
	for id := range byID {
		if !seen[id] {
			t.Errorf("table row %s is not in the spec", id)
		}
	}
	if len(ops) != 36 {
		t.Errorf("spec has %d operations, expected 36 (DIGEST e)", len(ops))
	}
}

// TestRoomAndUserParamsExist guards against typos in the parameter columns.
func TestRoomAndUserParamsExist(t *testing.T) {
	for _, e := range table {
		for _, p := range []string{e.RoomParam, e.UserParam} {
			if p != "" && !strings.Contains(e.Path, "{"+p+"}") {
				t.Errorf("%s %s: parameter %s not in template", e.Method, e.Path, p)
			}
		}
		if (e.UserParam != "" || e.UserQuery != "" || e.UserBody) && e.UserOwner == OwnerAny {
			t.Errorf("%s %s names a user but has no locality rule", e.Method, e.Path)
		}
		if e.Local && e.Auth != AuthNone {
			t.Errorf("%s %s is served locally but needs authentication", e.Method, e.Path)
		}
	}
}
