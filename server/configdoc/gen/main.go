// Command gen writes docs/configuration.md from config.Config (run by
// "go generate ./server/config", from that directory).
package main

import (
	"flag"
	"fmt"
	"os"
	"reflect"

	"github.com/sealroot/sealroot/server/config"
	"github.com/sealroot/sealroot/server/configdoc"
)

func main() {
	out := flag.String("o", "../../docs/configuration.md", "output `file`")
	src := flag.String("src", ".", "`directory` of package config's sources")
	flag.Parse()
	page, err := configdoc.Page(reflect.TypeFor[config.Config](), *src)
	if err == nil {
		err = os.WriteFile(*out, page, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
