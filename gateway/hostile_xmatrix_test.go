package gateway

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestHostileXMatrix abuses the X-Matrix grammar and the origin and
// destination it names. Malformed headers get 400 M_UNAUTHORIZED, requests
// that are well-formed but not for us or not provably from the origin get
// 401 M_UNAUTHORIZED; what the spec's grammar allows is accepted.
func TestHostileXMatrix(t *testing.T) {
	t.Parallel()
	e, _ := startHostile(t, "", nil)
	const target = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	sig := e.sig("GET", target, "gw.test", "")
	base := fmt.Sprintf(`origin="origin.test",destination="gw.test",key="ed25519:o_1",sig="%s"`, sig)
	with := func(params string) string {
		return rawRequest("GET", target, "", "Authorization: X-Matrix "+params)
	}
	replace := func(old, new string) string {
		if !strings.Contains(base, old) {
			t.Fatalf("%q not in the base header", old)
		}
		return with(strings.Replace(base, old, new, 1))
	}
	header := func(value string) string { return rawRequest("GET", target, "", "Authorization: "+value) }
	const malformed, unauthorized = 400, 401
	bad := func(name, request string) hostileCase {
		return hostileCase{name: name, request: request, status: malformed, errcode: CodeUnauthorized}
	}
	denied := func(name, request string) hostileCase {
		return hostileCase{name: name, request: request, status: unauthorized, errcode: CodeUnauthorized}
	}
	ok := func(name, request string) hostileCase {
		return hostileCase{name: name, request: request, status: 200, forwarded: true, target: target}
	}
	other := func(params string) string { return "Authorization: X-Matrix " + params }
	cases := []hostileCase{
		ok("well-formed control", with(base)),
		// What the grammar allows.
		ok("lower-case scheme", header("x-matrix "+base)),
		ok("several spaces after the scheme", header("X-Matrix   "+base)),
		ok("signature= alias", replace("sig=", "signature=")),
		ok("upper-case parameter names", with(strings.NewReplacer("origin=", "ORIGIN=", "key=", "Key=").Replace(base))),
		ok("unquoted values, spaces and tabs around commas and =",
			with(fmt.Sprintf("origin=origin.test ,\tdestination = gw.test,key=ed25519:o_1 , sig=%s", sig))),
		ok("backslash escape in a quoted value", replace(`origin="origin.test"`, `origin="orig\in.test"`)),
		ok("padded signature", replace(sig+`"`, sig+`=="`)),
		ok("unknown parameter", with(base+`,x-extra="whatever, with a comma"`)),
		// Duplicates and empties.
		bad("origin given twice", with(`origin="evil.test",`+base)),
		bad("origin given twice in another case", with(`ORIGIN="evil.test",`+base)),
		bad("destination given twice", with(base+`,destination="gw.test"`)),
		bad("key given twice", with(base+`,key="ed25519:o_2"`)),
		bad("sig and signature both", with(base+`,signature="`+sig+`"`)),
		bad("empty origin", replace(`origin="origin.test"`, `origin=""`)),
		bad("empty unquoted sig", replace(`sig="`+sig+`"`, `sig=`)),
		bad("missing origin", replace(`origin="origin.test",`, ``)),
		bad("missing key", replace(`key="ed25519:o_1",`, ``)),
		bad("missing sig", replace(`,sig="`+sig+`"`, ``)),
		bad("scheme without parameters", header("X-Matrix ")),
		bad("trailing comma", with(base+",")),
		bad("empty list element", replace(`,key=`, `,,key=`)),
		bad("parameter without a value", with(base+",flag")),
		bad("unterminated quoted value", with(base+`,x="open`)),
		// Sizes and characters.
		bad("origin of 9,000 bytes", replace(`origin="origin.test"`, `origin="`+strings.Repeat("a", 9000)+`.test"`)),
		bad("unknown parameter making the header over 8 KiB", with(base+`,x="`+strings.Repeat("x", 8200)+`"`)),
		{name: "headers beyond max_header_bytes", request: with(base + `,x="` + strings.Repeat("x", 24<<10) + `"`), status: 431},
		bad("non-ASCII origin", replace(`origin="origin.test"`, `origin="örigin.test"`)),
		{name: "control character in the header", request: replace(`origin="origin.test"`, "origin=\"origin.test\x01\""), status: 400},
		bad("escaped quote smuggling a second key", replace(`origin="origin.test"`, `origin="origin.test\",key=\"ed25519:evil"`)),
		bad("comma inside a quoted origin", replace(`origin="origin.test"`, `origin="origin.test,evil.test"`)),
		bad("signature not base64", replace(sig, "!!!!")),
		bad("signature of 63 bytes", replace(sig, sig[:84])),
		bad("signature in the URL-safe alphabet", replace(sig, strings.NewReplacer("+", "-", "/", "_").Replace(sig)+"-_")),
		bad("key that is not ed25519", replace(`key="ed25519:o_1"`, `key="curve25519:o_1"`)),
		// Several headers.
		bad("two headers naming different origins", rawRequest("GET", target, "", other(base), other(strings.Replace(base, "origin.test", "evil.test", 1)))),
		bad("two headers naming different destinations", rawRequest("GET", target, "", other(base), other(strings.Replace(base, `destination="gw.test"`, `destination="other.test"`, 1)))),
		bad("nine X-Matrix headers", rawRequest("GET", target, "", slices.Repeat([]string{other(base)}, 9)...)),
		denied("second header with a bad signature", rawRequest("GET", target, "", other(base), other(strings.Replace(base, "ed25519:o_1", "ed25519:o_2", 1)))),
		// Not X-Matrix at all.
		denied("Bearer instead of X-Matrix", header("Bearer abc")),
		denied("no space after the scheme name", header("X-Matrixorigin=origin.test")),
		denied("X-Matrix in another header", rawRequest("GET", target, "", "X-Authorization: X-Matrix "+base)),
		// Origin.
		bad("origin that is not a server name", replace(`origin="origin.test"`, `origin="bad_name!"`)),
		bad("origin with a path", replace(`origin="origin.test"`, `origin="origin.test/x"`)),
		bad("origin that is a bare IPv6 address", replace(`origin="origin.test"`, `origin="::1"`)),
		bad("origin with an out-of-range port", replace(`origin="origin.test"`, `origin="origin.test:99999"`)),
		denied("origin is our own name", rawRequest("GET", target, "", signWith(t, e.key, "gw.test", "GET", target, "gw.test", ""))),
		denied("origin is our own name in upper case", rawRequest("GET", target, "", signWith(t, e.key, "GW.TEST", "GET", target, "gw.test", ""))),
		denied("origin nobody can resolve", rawRequest("GET", target, "", signWith(t, e.good.key, "nowhere.test", "GET", target, "gw.test", ""))),
		// Destination.
		denied("destination is another server", rawRequest("GET", target, "", e.good.sign("GET", target, "other.test", ""))),
		denied("destination is our host with a port", rawRequest("GET", target, "", e.good.sign("GET", target, "gw.test:8448", ""))),
		denied("destination in upper case", rawRequest("GET", target, "", e.good.sign("GET", target, "GW.TEST", ""))),
		denied("header without destination, signed for another server",
			with(fmt.Sprintf(`origin="origin.test",key="ed25519:o_1",sig="%s"`, e.sig("GET", target, "other.test", "")))),
		denied("signature for another request-target", replace(sig, e.sig("GET", target+"&x=1", "gw.test", ""))),
	}
	e.run(t, cases)
}
