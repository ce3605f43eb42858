package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/config"
)

func cmdEgressCA(env *environment, args []string) int {
	fs := newFlagSet(env, "egress-ca", "-config FILE [-pem]",
		"Prints the egress CA: the certificate homeservers must trust when fedgate\n"+
			"intercepts their outbound TLS (egress.connect = \"intercept\"; Dendrite,\n"+
			"continuwuity, Synapse with https_proxy). It shows the certificate file,\n"+
			"subject, validity, SHA-256 fingerprint, how to trust it, and the PEM.\n\n"+
			"The CA is created in egress.ca_dir if it does not exist yet, exactly as\n"+
			"\"fedgate run\" would create it, so the homeserver can be set up first. An\n"+
			"existing CA is never replaced.")
	path := fs.String("config", "gateway.toml", "configuration file")
	pemOnly := fs.Bool("pem", false, "print only the PEM certificate (e.g. to redirect into a file)")
	if code, ok := parseFlags(env, fs, args, 0); !ok {
		return code
	}
	c, err := config.Load(*path)
	if err != nil {
		printConfigError(env.stderr, err)
		return exitFailure
	}
	_, statErr := os.Stat(filepath.Join(c.Egress.CADir, certs.EgressCACertFile))
	created := errors.Is(statErr, os.ErrNotExist)
	ca, err := certs.LoadOrCreateEgressCA(c.Egress.CADir, nil)
	if err != nil {
		fmt.Fprintf(env.stderr, "fedgate egress-ca: %v\n", err)
		return exitFailure
	}
	if *pemOnly {
		env.stdout.Write(ca.CertPEM())
		return exitOK
	}
	cert := ca.Certificate()
	sum := sha256.Sum256(cert.Raw)
	hexPairs := make([]string, len(sum))
	for i, b := range sum {
		hexPairs[i] = fmt.Sprintf("%02X", b)
	}
	state := "loaded"
	if created {
		state = "created"
	}
	fmt.Fprintf(env.stdout, "egress CA (%s): %s\n", state, ca.CertPath())
	fmt.Fprintf(env.stdout, "subject:  %s\n", cert.Subject.CommonName)
	fmt.Fprintf(env.stdout, "valid:    %s to %s\n", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(env.stdout, "sha256:   %s\n", strings.Join(hexPairs, ":"))
	fmt.Fprintf(env.stdout, "\nHave the homeserver trust it for its outbound federation (copy the file where\nthe homeserver can read it; %s stays private to fedgate):\n", certs.EgressCAKeyFile)
	fmt.Fprintf(env.stdout, "  Synapse with https_proxy: federation_custom_ca_list: [\"/path/to/copy/of/%s\"]\n", certs.EgressCACertFile)
	fmt.Fprintf(env.stdout, "  Dendrite, continuwuity:    add it to the system trust store, or set SSL_CERT_FILE\n")
	fmt.Fprintf(env.stdout, "                             to one file holding the system roots and this CA\n")
	fmt.Fprintf(env.stdout, "Synapse's worker proxy protocol (egress.worker_proxy) needs no CA.\n\n")
	if c.Egress.Connect != config.ConnectIntercept {
		fmt.Fprintf(env.stderr, "note: egress.connect is %q; the CA is used only with \"intercept\"\n", c.Egress.Connect)
	}
	env.stdout.Write(ca.CertPEM())
	return exitOK
}
