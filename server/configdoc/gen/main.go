// Command gen writes docs/configuration.md from server.Config (run by
// "go generate ./server", from the server directory).
package main

import (
	"flag"
	"fmt"
	"os"
	"reflect"

	"github.com/sealroot/sealroot/server"
	"github.com/sealroot/sealroot/server/configdoc"
)

func main() {
	out := flag.String("o", "../docs/configuration.md", "output `file`")
	src := flag.String("src", ".", "`directory` of package server's sources")
	flag.Parse()
	page, err := configdoc.Page(reflect.TypeFor[server.Config](), *src)
	if err == nil {
		err = os.WriteFile(*out, page, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
