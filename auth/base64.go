package auth

import (
	"encoding/base64"
	"strings"
)

// EncodeBase64 encodes b as the spec's unpadded base64 (standard alphabet,
// no '=').
func EncodeBase64(b []byte) string {
	return base64.RawStdEncoding.EncodeToString(b)
}

// DecodeBase64 decodes unpadded base64; padded input is accepted too, as the
// spec asks of decoders.
func DecodeBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// AppendBase64 appends the unpadded base64 encoding of b to dst.
func AppendBase64(dst, b []byte) []byte {
	return base64.RawStdEncoding.AppendEncode(dst, b)
}
