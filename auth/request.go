package auth

import (
	"crypto/ed25519"
	"sync"

	"github.com/fedgate/fedgate/internal/servername"
)

// The object an X-Matrix signature covers is
//
//	{"content":<body>,"destination":"…","method":"…","origin":"…","uri":"…"}
//
// with "content" present only when the request has a body. Its keys are
// already in canonical order, so it is built by appending into a reused
// buffer: no maps and, on the verify path, no allocations.

// msgPool recycles the buffers the signed object is built in.
var msgPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledMsg is the largest buffer returned to msgPool (the default
// /send body limit); larger ones are left to the garbage collector.
const maxPooledMsg = 8 << 20

// Body forms requestMessage accepts.
const (
	bodyRaw       = iota // JSON text, canonicalised leniently
	bodyCanonical        // already the output of CanonicalizeContent
)

// requestMessage appends the signed object to dst. A non-empty body becomes
// "content": raw bodies are canonicalised with lenient integers (see
// [Canonicalizer.Lenient]); canonical ones are copied as they are.
func requestMessage(dst []byte, method, uri, origin, destination string, body []byte, form int) ([]byte, error) {
	dst = append(dst, '{')
	if len(body) > 0 {
		dst = append(dst, contentHead[1:]...)
		if form == bodyCanonical {
			dst = append(dst, body...)
		} else {
			var err error
			dst, err = canonicalizeLenient(dst, body)
			if err != nil {
				return dst, newError(KindBadBody, err, "Request body is not acceptable JSON: %s", err.Error())
			}
		}
		dst = append(dst, ',')
	}
	return requestFields(dst, method, uri, origin, destination)
}

// The signed object with content is contentHead, the content, ',' and
// requestFields; without, '{' and requestFields.
var (
	contentHead = []byte(`{"content":`)
	comma       = []byte{','}
	openBrace   = []byte{'{'}
)

// requestFields appends the members of the signed object after "content"
// and the closing brace.
func requestFields(dst []byte, method, uri, origin, destination string) ([]byte, error) {
	var err error
	fields := [...]struct{ name, prefix, value string }{
		{"destination", `"destination":`, destination},
		{"method", `,"method":`, method},
		{"origin", `,"origin":`, origin},
		{"uri", `,"uri":`, uri},
	}
	for _, f := range fields {
		dst = append(dst, f.prefix...)
		if dst, err = appendJSONString(dst, f.value); err != nil {
			return dst, newError(KindBadSignature, err, "Request %s is not valid UTF-8, so no signature can cover it", f.name)
		}
	}
	return append(dst, '}'), nil
}

// AppendRequestMessage appends to dst the exact bytes an X-Matrix
// signature covers for a request from origin to destination: the canonical
// JSON object with content (already canonical, as [ContentOf] or
// [CanonicalizeContent] return it; nil or empty: no body), destination,
// method, origin and uri. Verifying a header is ed25519 over these bytes;
// tools use it to time or inspect that step. Errors are *[Error] of kind
// KindBadSignature for strings that are not valid UTF-8.
func AppendRequestMessage(dst []byte, method, requestURI, origin, destination string, content []byte) ([]byte, error) {
	return requestMessage(dst, method, requestURI, origin, destination, content, bodyCanonical)
}

// SignRequest signs a federation request from origin to destination (both
// server names before delegation) with key. requestURI is the raw
// request-target exactly as it will be sent (path and query, no scheme or
// host). A nil or empty body means the request has no content; otherwise
// body must be JSON and is signed as its canonical form. Content is read
// with [Canonicalizer.Lenient] semantics, for the same reason as on the
// verifying side: our homeserver's events in room versions 1-5 may carry
// out-of-range integers that every receiver verifies as they are.
//
// It returns the header to send (use its String method). Errors are
// *[Error]: KindBadBody for a body that is not JSON, KindMalformedHeader
// for an invalid origin or destination, KindBadJSON for a key without a
// private half. It is safe for concurrent use.
func SignRequest(key SigningKey, method, requestURI, origin, destination string, body []byte) (XMatrix, error) {
	if !servername.Valid(origin) {
		return XMatrix{}, newError(KindMalformedHeader, nil, "cannot sign: origin %s is not a valid server name", quoteShort(origin))
	}
	if !servername.Valid(destination) {
		return XMatrix{}, newError(KindMalformedHeader, nil, "cannot sign: destination %s is not a valid server name", quoteShort(destination))
	}
	if len(key.Private) != ed25519.PrivateKeySize {
		return XMatrix{}, newError(KindBadJSON, nil, "cannot sign: key %s has no private key", key.ID)
	}
	bp := msgPool.Get().(*[]byte)
	defer putMsg(bp)
	msg, err := requestMessage((*bp)[:0], method, requestURI, origin, destination, body, bodyRaw)
	*bp = msg
	if err != nil {
		return XMatrix{}, err
	}
	return XMatrix{Origin: origin, Destination: destination, Key: key.ID, Sig: ed25519.Sign(key.Private, msg)}, nil
}

// VerifyRequest checks an inbound request's X-Matrix header x against the
// origin's public key pub for x.Key. ourName is this server's name: a
// destination in the header must equal it, and it is always the signed
// destination (even when the header has none). requestURI is the raw
// request-target as received; body the raw request body (content is its
// canonical form, read with [Canonicalizer.Lenient] so that old-room events
// with out-of-range integers do not fail the whole request).
//
// Errors are *[Error] of kind KindDestinationMismatch, KindBadBody or
// KindBadSignature. It does not allocate on success and is safe for
// concurrent use.
func VerifyRequest(x XMatrix, method, requestURI, ourName string, body []byte, pub ed25519.PublicKey) error {
	return verifyRequest(x, method, requestURI, ourName, body, bodyRaw, pub, nil)
}

// CanonicalizeContent appends to dst the form in which a request body is
// signed as X-Matrix "content": canonical JSON, with out-of-range integers
// kept as written (see [Canonicalizer.Lenient]). The gateway runs it once
// per request, before fetching keys, so junk bodies are refused cheaply and
// every X-Matrix header is then checked against the same bytes with
// [VerifyRequestContent]. Errors are *[JSONError]. It is safe for concurrent
// use.
func CanonicalizeContent(dst, body []byte) ([]byte, error) {
	return canonicalizeLenient(dst, body)
}

// ContentOf returns the form in which a request body is signed as X-Matrix
// "content", like [CanonicalizeContent], but without copying in the common
// case: a body that is already canonical (Synapse sends canonical JSON) is
// checked in one pass and returned itself, so the signature is verified
// over the received bytes; any other acceptable body is written out in
// canonical form by the same pass.
// The result may share memory with body. Errors are *[JSONError]. It is
// safe for concurrent use.
func ContentOf(body []byte) ([]byte, error) {
	return ContentOfInto(nil, body)
}

// ContentOfInto is [ContentOf] with the caller's buffer: a body that is
// not canonical is written out into dst[:0], grown when too small, so a
// caller that keeps its buffers (the gateway pools them) allocates
// nothing. The result is body itself or shares dst's memory (or its
// replacement's). It is safe for concurrent use on distinct buffers.
func ContentOfInto(dst, body []byte) ([]byte, error) {
	c := getCanonicalizer(true)
	out, edited, err := c.canonical(dst[:0], body)
	putCanonicalizer(c)
	switch {
	case err != nil:
		return nil, err
	case !edited:
		return body, nil
	}
	return out, nil
}

// VerifyRequestContent is [VerifyRequest] for a body already turned into
// content by [CanonicalizeContent] (nil or empty: the request has no body).
// The content is used as given; passing anything else makes verification
// fail, never pass wrongly, since the signature covers the exact bytes.
func VerifyRequestContent(x XMatrix, method, requestURI, ourName string, content []byte, pub ed25519.PublicKey) error {
	return verifyRequest(x, method, requestURI, ourName, content, bodyCanonical, pub, nil)
}

// VerifyRequestWith is [VerifyRequestContent] with a prepared key, as
// [Keyring.Verifier] returns it: the same checks and the same answers,
// for less than half the work.
func VerifyRequestWith(x XMatrix, method, requestURI, ourName string, content []byte, key *Verifier) error {
	if key == nil {
		return newError(KindUnknownKey, nil, "No usable public key for %s", x.Key)
	}
	return verifyRequest(x, method, requestURI, ourName, content, bodyCanonical, key.pub, key)
}

func verifyRequest(x XMatrix, method, requestURI, ourName string, body []byte, form int, pub ed25519.PublicKey, key *Verifier) error {
	if x.Destination != "" && x.Destination != ourName {
		return &Error{Kind: KindDestinationMismatch, Msg: "The request is for another server (X-Matrix destination does not match)"}
	}
	if len(x.Sig) != ed25519.SignatureSize {
		return &Error{Kind: KindBadSignature, Msg: "X-Matrix signature has the wrong length"}
	}
	if len(pub) != ed25519.PublicKeySize {
		return newError(KindUnknownKey, nil, "No usable public key for %s", x.Key)
	}
	bp := msgPool.Get().(*[]byte)
	defer putMsg(bp)
	var ok bool
	if key != nil {
		// A prepared key comes with canonical content only
		// (VerifyRequestWith): the signed object is hashed in parts, the
		// content where it is, with no copy of the body.
		fields, err := requestFields((*bp)[:0], method, requestURI, x.Origin, ourName)
		*bp = fields
		if err != nil {
			return err
		}
		if len(body) > 0 {
			ok = key.key.VerifyParts(x.Sig, contentHead, body, comma, fields)
		} else {
			ok = key.key.VerifyParts(x.Sig, openBrace, fields)
		}
	} else {
		msg, err := requestMessage((*bp)[:0], method, requestURI, x.Origin, ourName, body, form)
		*bp = msg
		if err != nil {
			return err
		}
		ok = ed25519.Verify(pub, msg, x.Sig)
	}
	if !ok {
		return &Error{Kind: KindBadSignature, Msg: "Invalid X-Matrix signature"}
	}
	return nil
}

func putMsg(bp *[]byte) {
	if cap(*bp) <= maxPooledMsg {
		msgPool.Put(bp)
	}
}
