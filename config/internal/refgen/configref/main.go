// Command configref writes docs/configuration.md from the configuration
// schema. Run it through "go generate ./config/" (see config/doc.go).
//
//	go run ./config/internal/refgen/configref -src config -o docs/configuration.md
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/fedgate/fedgate/config/internal/refgen"
)

func main() {
	src := flag.String("src", ".", "folder of the config package's Go source")
	out := flag.String("o", "../docs/configuration.md", "file to write")
	flag.Parse()
	if err := refgen.Generate(*src, *out); err != nil {
		fmt.Fprintf(os.Stderr, "configref: %v\n", err)
		os.Exit(1)
	}
}
