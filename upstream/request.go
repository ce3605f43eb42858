package upstream

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// Request is one request to forward. RoundTrip does not modify it or keep
// any part of it after returning.
type Request struct {
	// Method is sent as given ("GET", "PUT", ...).
	Method string
	// Target is the origin-form request-target ("/path?query"), sent byte
	// for byte: no cleaning, no re-escaping.
	Target string
	// Host is the Host header; empty sends the member's host.
	Host string
	// Header holds the fields to send, as received (values in order). The
	// hop-by-hop fields (Connection and those it names, Keep-Alive,
	// Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE,
	// Trailer, Transfer-Encoding, Upgrade) and the framing fields Host,
	// Content-Length and Expect are never sent from it. May be nil.
	Header http.Header
	// Set replaces the named fields of Header (X-Forwarded-For, ...); a
	// Field with an empty Value only removes the field. Names must be in
	// canonical form.
	Set []Field
	// Body is sent with a Content-Length. Nil or empty: no body (POST,
	// PUT and PATCH still send "Content-Length: 0").
	Body []byte
}

// Field is one header field for [Request.Set].
type Field struct{ Name, Value string }

// appendHead appends the request line and header fields of req.
func appendHead(dst []byte, req *Request, host string) []byte {
	dst = append(dst, req.Method...)
	dst = append(dst, ' ')
	dst = append(dst, req.Target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = appendValue(dst, host)
	dst = append(dst, "\r\n"...)
	connection := req.Header["Connection"]
	for name, values := range req.Header {
		if skipRequestField(name) || listedIn(connection, name) || isSet(req.Set, name) {
			continue
		}
		for _, v := range values {
			dst = appendField(dst, name, v)
		}
	}
	for _, f := range req.Set {
		if f.Value != "" {
			dst = appendField(dst, f.Name, f.Value)
		}
	}
	if len(req.Body) > 0 || methodHasBody(req.Method) {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(req.Body)), 10)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = appendValue(dst, value)
	return append(dst, "\r\n"...)
}

// appendValue writes a field value with any CR or LF turned into a space,
// as net/http does. Values that came through net/http's server cannot
// hold them; this keeps a caller's mistake from splitting the head.
func appendValue(dst []byte, v string) []byte {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		return append(dst, v...)
	}
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b == '\r' || b == '\n' {
			b = ' '
		}
		dst = append(dst, b)
	}
	return dst
}

// skipRequestField reports fields never copied from Request.Header:
// hop-by-hop ones (RFC 9110 section 7.6.1, and the ones net/http's
// reverse proxy drops) and the framing RoundTrip writes itself. Expect is
// dropped because the body is sent at once, never after a 100 Continue.
func skipRequestField(name string) bool {
	switch name {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Expect":
		return true
	}
	return false
}

// skipResponseField reports hop-by-hop fields of a response, which stay
// between the homeserver and fedgate.
func skipResponseField(name string) bool {
	switch name {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// listedIn reports whether a Connection header (its values) names the
// field name as hop-by-hop.
func listedIn(connection []string, name string) bool {
	for _, v := range connection {
		for v != "" {
			var token string
			token, v, _ = strings.Cut(v, ",")
			token = textproto.TrimString(token)
			if token != "" && strings.EqualFold(token, name) {
				return true
			}
		}
	}
	return false
}

func isSet(set []Field, name string) bool {
	for _, f := range set {
		if f.Name == name {
			return true
		}
	}
	return false
}

// stripHopByHop removes a response's hop-by-hop fields from h.
func stripHopByHop(h http.Header) {
	connection := h["Connection"]
	for name := range h {
		if skipResponseField(name) || listedIn(connection, name) {
			delete(h, name)
		}
	}
}
