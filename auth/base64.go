package auth

import (
	"encoding/base64"
	"strings"
)

// EncodeBase64 encodes b as the spec's unpadded base64 (standard alphabet,
// no '='). A nil or empty b encodes as "".
func EncodeBase64(b []byte) string {
	return base64.RawStdEncoding.EncodeToString(b)
}

// DecodeBase64 decodes unpadded base64; correctly padded input is accepted
// too, as the spec asks of decoders. Stray or excess '=' are errors.
func DecodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// AppendBase64 appends the unpadded base64 encoding of b to dst.
func AppendBase64(dst, b []byte) []byte {
	return base64.RawStdEncoding.AppendEncode(dst, b)
}
