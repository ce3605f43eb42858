package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/fedgate/fedgate/internal/servername"
)

// ErrBadLeafName is wrapped by the errors of [EgressCA.CertificateFor]
// when the requested name is neither a DNS name of the server-name
// grammar nor an IP address.
var ErrBadLeafName = errors.New("not a DNS name or IP address")

// ErrNoServerName is returned by [EgressCA.GetCertificate] for a
// ClientHello without SNI; use [EgressCA.GetCertificateOr] with the
// CONNECT host for clients that send none (IP literal destinations).
var ErrNoServerName = errors.New("client sent no server name")

// maxLeafName is the longest DNS name a certificate can carry.
const maxLeafName = 253

// leafName normalises a requested name: DNS names lower case without a
// trailing dot, IP addresses (bracketed or not) in canonical form. It
// refuses anything else, ports and zones included.
func leafName(s string) (string, error) {
	if len(s) > maxLeafName+3 { // "[" + IPv6 + "]" or name + "."
		return "", fmt.Errorf("name of %d bytes: %w", len(s), ErrBadLeafName)
	}
	host := s
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		ip, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", fmt.Errorf("%q: %w", s, ErrBadLeafName)
		}
		return ip.String(), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("%q: %w", s, ErrBadLeafName)
		}
		return ip.Unmap().String(), nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" || len(host) > maxLeafName {
		return "", fmt.Errorf("%q: %w", s, ErrBadLeafName)
	}
	n, err := servername.Parse(host)
	if err != nil || n.Port != 0 || n.IsIP() {
		return "", fmt.Errorf("%q: %w", s, ErrBadLeafName)
	}
	return host, nil
}

// CertificateFor returns a leaf certificate for serverName (a DNS name or
// an IP address, IPv6 with or without brackets, no port) signed by the CA.
// Cached leaves are reused until a third of their lifetime remains; then
// a new one is minted. Concurrent calls for the same name share one mint.
// A bad name fails with an error wrapping [ErrBadLeafName] without doing
// any cryptography.
func (ca *EgressCA) CertificateFor(serverName string) (*tls.Certificate, error) {
	name, err := leafName(serverName)
	if err != nil {
		return nil, fmt.Errorf("egress certificate: %w", err)
	}
	now := ca.now()
	ca.mu.Lock()
	if el, ok := ca.leaves[name]; ok {
		e := el.Value.(*leafEntry)
		if now.Before(e.refreshAt) {
			ca.lru.MoveToFront(el)
			ca.mu.Unlock()
			return e.cert, nil
		}
	}
	if call, ok := ca.inflight[name]; ok {
		ca.mu.Unlock()
		<-call.done
		return call.cert, call.err
	}
	call := &mintCall{done: make(chan struct{})}
	ca.inflight[name] = call
	ca.minted++
	ca.mu.Unlock()

	call.cert, call.err = ca.mint(name, now)

	ca.mu.Lock()
	delete(ca.inflight, name)
	if call.err == nil {
		ca.store(name, call.cert, now)
	}
	ca.mu.Unlock()
	close(call.done)
	return call.cert, call.err
}

// GetCertificate mints or reuses a leaf for the ClientHello's SNI name; it
// fits tls.Config.GetCertificate.
func (ca *EgressCA) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		return nil, ErrNoServerName
	}
	return ca.CertificateFor(hello.ServerName)
}

// GetCertificateOr returns a tls.Config.GetCertificate callback that uses
// the ClientHello's SNI name, or fallback (typically the host of the
// CONNECT request) when the client sent none, as Matrix servers do for IP
// literal destinations.
func (ca *EgressCA) GetCertificateOr(fallback string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName != "" {
			return ca.CertificateFor(hello.ServerName)
		}
		return ca.CertificateFor(fallback)
	}
}

// mint signs a new leaf for a normalised name.
func (ca *EgressCA) mint(name string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("egress certificate for %s: generating key: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("egress certificate for %s: %w", name, err)
	}
	notAfter := now.Add(ca.validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("egress certificate for %s: the egress CA expired at %s", name, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-leafBackdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(name) <= 64 { // the X.509 upper bound for a common name
		tmpl.Subject.CommonName = name
	}
	addSubjects(tmpl, []string{name})
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("egress certificate for %s: signing: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("egress certificate for %s: parsing: %w", name, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// store caches a fresh leaf, evicting the least recently used entries
// beyond the limit. Callers hold mu.
func (ca *EgressCA) store(name string, cert *tls.Certificate, now time.Time) {
	life := cert.Leaf.NotAfter.Sub(now)
	e := &leafEntry{name: name, cert: cert, refreshAt: cert.Leaf.NotAfter.Add(-life / 3)}
	if el, ok := ca.leaves[name]; ok {
		el.Value = e
		ca.lru.MoveToFront(el)
		return
	}
	ca.leaves[name] = ca.lru.PushFront(e)
	for ca.lru.Len() > ca.limit {
		old := ca.lru.Back()
		ca.lru.Remove(old)
		delete(ca.leaves, old.Value.(*leafEntry).name)
	}
}
