package main

import (
	"fmt"

	"github.com/fedgate/fedgate/auth"
)

func cmdKeygen(env *environment, args []string) int {
	fs := newFlagSet(env, "keygen", "-out FILE [-format synapse|dendrite] [-version V]",
		"Writes a new ed25519 signing key to FILE and prints its key id and public key.\n"+
			"It never overwrites an existing file. Both formats are read by \"fedgate run\"\n"+
			"(keys.signing_key), by Synapse (signing_key_path) and by Dendrite (private_key).")
	out := fs.String("out", "", "file to write the key to (required; must not exist)")
	format := fs.String("format", auth.FormatSynapse, "key file format: synapse (one line \"ed25519 <version> <seed>\") or dendrite (PEM \"MATRIX PRIVATE KEY\")")
	keyVersion := fs.String("version", "", "key version, the part after \"ed25519:\" (letters, digits, _); default: random \"a_XXXX\"")
	if code, ok := parseFlags(env, fs, args, 0); !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintln(env.stderr, "fedgate keygen: -out is required")
		fs.Usage()
		return exitUsage
	}
	if *format != auth.FormatSynapse && *format != auth.FormatDendrite {
		fmt.Fprintf(env.stderr, "fedgate keygen: -format must be synapse or dendrite, not %q\n", *format)
		return exitUsage
	}
	if *keyVersion != "" && !auth.ValidKeyVersion(*keyVersion) {
		fmt.Fprintf(env.stderr, "fedgate keygen: -version %q: use letters, digits and _ only\n", *keyVersion)
		return exitUsage
	}
	key, err := auth.GenerateSigningKey(*keyVersion)
	if err != nil {
		fmt.Fprintf(env.stderr, "fedgate keygen: %v\n", err)
		return exitFailure
	}
	if err := auth.WriteKeyFile(*out, *format, []auth.SigningKey{key}); err != nil {
		fmt.Fprintf(env.stderr, "fedgate keygen: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(env.stdout, "wrote %s key to %s\nkey id:     %s\npublic key: %s\n", *format, *out, key.ID, auth.EncodeBase64(key.Public()))
	return exitOK
}
