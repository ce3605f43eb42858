package certs

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// CertStatus describes one certificate a [Manager] serves or is waiting for,
// for readiness checks, metrics and logs. It is a copy; changing it has no
// effect.
type CertStatus struct {
	// Name is what the entry is about: in acme mode the managed DNS name
	// (one entry per name), otherwise the certificate's first subject name.
	Name string
	// Source is the mode the certificate comes from: ModeACME, ModeFiles or
	// ModeSelfSigned.
	Source string
	// Subjects are the DNS names and IP addresses the certificate covers;
	// nil while no certificate exists.
	Subjects []string
	// Issuer is the issuing CA's common name (e.g. "R11"); empty while no
	// certificate exists.
	Issuer string
	// Serial is the certificate's serial number in hex.
	Serial string
	// NotBefore and NotAfter bound the certificate's validity; zero while
	// no certificate exists.
	NotBefore, NotAfter time.Time
	// Location is where the certificate lives: the certificate file (files,
	// self_signed) or the ACME directory URL (acme).
	Location string
	// Pending is true while no certificate exists yet (acme only):
	// handshakes for Name fail with a TLS alert until one is obtained.
	Pending bool
	// LastError is the latest failure for this certificate (an ACME order
	// that failed, or a replacement pair that was refused); empty after a
	// success.
	LastError string
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time
}

// statusFromLeaf fills the certificate fields of a status from a leaf.
func statusFromLeaf(s *CertStatus, leaf *x509.Certificate) {
	if leaf == nil {
		return
	}
	s.Subjects = subjects(leaf)
	s.Issuer = leaf.Issuer.CommonName
	if s.Issuer == "" && len(leaf.Issuer.Organization) > 0 {
		s.Issuer = leaf.Issuer.Organization[0]
	}
	s.Serial = leaf.SerialNumber.Text(16)
	s.NotBefore, s.NotAfter = leaf.NotBefore, leaf.NotAfter
	if s.Name == "" && len(s.Subjects) > 0 {
		s.Name = s.Subjects[0]
	}
}

// subjects lists a certificate's DNS and IP subject alternative names.
func subjects(leaf *x509.Certificate) []string {
	out := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap().String())
		}
	}
	return out
}

// missingNames returns the names in want that leaf does not cover
// (wildcards included, as TLS clients check them).
func missingNames(leaf *x509.Certificate, want []string) []string {
	var missing []string
	for _, n := range want {
		if leaf.VerifyHostname(n) != nil {
			missing = append(missing, n)
		}
	}
	return missing
}

// readiness turns statuses into the answer of [Manager.Ready].
func readiness(statuses []CertStatus, now time.Time) (bool, string) {
	var problems []string
	for _, s := range statuses {
		switch {
		case s.Pending && s.LastError != "":
			problems = append(problems, fmt.Sprintf("%s: no certificate yet, last attempt failed: %s", s.Name, s.LastError))
		case s.Pending:
			problems = append(problems, fmt.Sprintf("%s: no certificate yet, obtaining one", s.Name))
		case !now.Before(s.NotAfter):
			problems = append(problems, fmt.Sprintf("%s: certificate expired at %s", s.Name, s.NotAfter.UTC().Format(time.RFC3339)))
		case now.Before(s.NotBefore):
			problems = append(problems, fmt.Sprintf("%s: certificate not valid before %s", s.Name, s.NotBefore.UTC().Format(time.RFC3339)))
		}
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, "; ")
	}
	if len(statuses) == 0 {
		return false, "no certificate"
	}
	var names []string
	for _, s := range statuses {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return true, fmt.Sprintf("%s certificate for %s valid", statuses[0].Source, strings.Join(names, ", "))
}
