package gateway

import (
	"fmt"
	"strings"
	"testing"
)

// TestHostileJSON sends transaction bodies that are not acceptable
// canonical-JSON input. They are refused with 400 before any key is
// fetched (M_NOT_JSON when the body is not JSON at all, M_BAD_JSON when it
// is JSON that canonical JSON forbids); what canonicalises cleanly is
// verified against its canonical form and forwarded byte for byte.
func TestHostileJSON(t *testing.T) {
	t.Parallel()
	e, _ := startHostile(t, "", nil)
	n := 0
	target := func() string { n++; return fmt.Sprintf("/_matrix/federation/v1/send/json%d", n) }
	// refused sends body under a signature over an innocent body: the
	// JSON stage must refuse it before the signature is even looked at.
	refused := func(name, body, errcode string) hostileCase {
		tg := target()
		return hostileCase{name: name, status: 400, errcode: errcode,
			request: rawRequest("PUT", tg, body, e.good.sign("PUT", tg, "gw.test", "{}"))}
	}
	// accepted sends body signed by the origin (over its canonical form).
	accepted := func(name, body string) hostileCase {
		tg := target()
		return hostileCase{name: name, status: 200, forwarded: true, target: tg, check: bodyIs(body),
			request: rawRequest("PUT", tg, body, e.good.sign("PUT", tg, "gw.test", body))}
	}
	// resigned sends body under a signature over another body that has
	// the same canonical form.
	resigned := func(name, body, signedAs string) hostileCase {
		tg := target()
		return hostileCase{name: name, status: 200, forwarded: true, target: tg, check: bodyIs(body),
			request: rawRequest("PUT", tg, body, e.good.sign("PUT", tg, "gw.test", signedAs))}
	}
	manyKeys := func(n int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := n; i > 0; i-- {
			if i < n {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"k%06d":%d`, i, i)
		}
		b.WriteString("}")
		return b.String()
	}
	const notJSON, badJSON = CodeNotJSON, CodeBadJSON
	cases := []hostileCase{
		accepted("control: canonical transaction", `{"edus":[],"origin":"origin.test","origin_server_ts":1,"pdus":[]}`),
		// Encodings.
		refused("invalid UTF-8 in a string", "{\"a\":\"\xff\"}", badJSON),
		refused("invalid UTF-8 outside strings", "{\"a\":1\xff}", notJSON),
		refused("overlong UTF-8 for '/'", "{\"a\":\"\xc0\xaf\"}", badJSON),
		refused("UTF-8 encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", badJSON),
		refused("lone surrogate escape", `{"a":"\ud800"}`, badJSON),
		refused("lone low surrogate escape", `{"a":"\udc00x"}`, badJSON),
		refused("raw control character in a string", "{\"a\":\"\x01\"}", notJSON),
		refused("byte order mark", "\xef\xbb\xbf{}", notJSON),
		refused("invalid escape", `{"a":"\x41"}`, notJSON),
		// Keys.
		refused("duplicate key", `{"a":1,"a":2}`, badJSON),
		refused("duplicate key through an escape", `{"a":1,"\u0061":2}`, badJSON),
		refused("duplicate key deep inside", `{"pdus":[{"content":{"body":"x","body":"y"}}]}`, badJSON),
		// Numbers.
		refused("float", `{"origin_server_ts":1.5}`, badJSON),
		refused("integral number out of range with an exponent", `{"a":1e30}`, badJSON),
		refused("huge exponent", `{"a":1e999999999}`, badJSON),
		refused("negative fraction", `{"a":-0.000001}`, badJSON),
		refused("NaN", `{"a":NaN}`, notJSON),
		refused("Infinity", `{"a":-Infinity}`, notJSON),
		refused("leading zero", `{"a":01}`, notJSON),
		refused("hexadecimal number", `{"a":0x10}`, notJSON),
		// Structure.
		refused("nesting of 300 levels", `{"a":`+strings.Repeat("[", 300)+strings.Repeat("]", 300)+`}`, badJSON),
		refused("nesting of 100,000 levels", strings.Repeat("[", 100000)+strings.Repeat("]", 100000), notJSON),
		refused("unterminated nesting", strings.Repeat(`{"a":`, 50000), notJSON),
		refused("trailing data", `{}x`, notJSON),
		refused("two objects", `{}{}`, notJSON),
		refused("array at the top", `[{}]`, badJSON),
		refused("string at the top", `"{}"`, badJSON),
		refused("null at the top", `null`, badJSON),
		refused("empty body", ``, notJSON),
		refused("whitespace only", "  \r\n\t ", notJSON),
		refused("truncated object", `{"a":[1,2`, notJSON),
		refused("single quotes", `{'a':1}`, notJSON),
		refused("trailing comma", `{"a":1,}`, notJSON),
		refused("comment", `{"a":1 /* x */}`, notJSON),
		// What canonicalises cleanly is verified against its canonical form.
		resigned("keys out of order with whitespace", " { \"pdus\" : [ ] ,\n\t\"origin\":\"origin.test\" } ", `{"origin":"origin.test","pdus":[]}`),
		resigned("escaped non-ASCII and slash", `{"a":"\u00e9\/"}`, `{"a":"é/"}`),
		resigned("integral exponent", `{"a":1e2,"b":-0}`, `{"a":100,"b":0}`),
		// Plain integer literals outside 2^53 are kept as written: old room
		// versions allow them in events and Synapse signs them as they are.
		accepted("integer beyond 2^53 in an old-room event", `{"pdus":[{"depth":18014398509481984}]}`),
		accepted("object with 10,000 keys in reverse order", manyKeys(10000)),
	}
	e.run(t, cases)
}
