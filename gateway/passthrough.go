package gateway

import (
	"strings"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// passthroughEndpoint describes requests under a configured passthrough
// prefix: outside the spec's table, forwarded after X-Matrix verification.
var passthroughEndpoint = endpoints.Endpoint{
	Name: "passthrough", Class: "passthrough", Auth: endpoints.AuthXMatrix, Body: endpoints.BodyDefault,
}

// passthroughMatcher returns the lookup for [inbound] passthrough prefixes.
func passthroughMatcher(prefixes []string) func(string) *endpoints.Endpoint {
	if len(prefixes) == 0 {
		return func(string) *endpoints.Endpoint { return nil }
	}
	ps := append([]string(nil), prefixes...)
	ep := passthroughEndpoint
	return func(path string) *endpoints.Endpoint {
		for _, p := range ps {
			// Prefixes are plain paths (config refuses escapes and dot
			// segments); the path must not smuggle either after the prefix.
			if strings.HasPrefix(path, p) && !strings.Contains(path, "/../") && !strings.Contains(path, "/./") &&
				!strings.HasSuffix(path, "/..") && !strings.Contains(path, "//") && !strings.Contains(strings.ToLower(path), "%2e") {
				return &ep
			}
		}
		return nil
	}
}
