package edverify

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// BenchmarkVerify compares a key with its table, a decoded key without
// one, and crypto/ed25519, on a 175-byte message (a signed GET) and a
// 16 KiB one (a /send transaction, where SHA-512 weighs in).
//
//	go test -run '^$' -bench . -benchmem ./internal/edverify/
func BenchmarkVerify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	for _, size := range []struct {
		name string
		n    int
	}{{"175B", 175}, {"16KiB", 16 << 10}} {
		msg := make([]byte, size.n)
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		table, _ := Precompute(pub)
		decoded, _ := New(pub)
		b.Run(size.name+"/precomputed", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !table.Verify(msg, sig) {
					b.Fatal("refused")
				}
			}
		})
		b.Run(size.name+"/decoded", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !decoded.Verify(msg, sig) {
					b.Fatal("refused")
				}
			}
		})
		b.Run(size.name+"/crypto-ed25519", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !ed25519.Verify(pub, msg, sig) {
					b.Fatal("refused")
				}
			}
		})
	}
}

// BenchmarkPrecompute is the one-time cost of a key's table.
func BenchmarkPrecompute(b *testing.B) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		Precompute(pub)
	}
}
