package ipxe_test

import (
	"fmt"

	"github.com/sealroot/sealroot/ipxe"
)

func ExampleRender() {
	script, err := ipxe.Render(ipxe.Params{
		BaseURL: "http://192.0.2.1:8080/artifacts",
		Arch:    ipxe.ArchEFIx64,
		UKI:     "sealroot.efi",
		Cmdline: "console=ttyS0 quiet",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(script))
	// Output:
	// #!ipxe
	// # sealroot boot script, arch efi-x64. Carries no secrets.
	// :retry
	// imgfree
	// kernel http://192.0.2.1:8080/artifacts/sealroot.efi console=ttyS0 quiet || goto failed
	// boot || goto failed
	// :failed
	// echo sealroot: boot failed, retrying in 5 s
	// sleep 5
	// goto retry
}

func ExampleCheckCmdline() {
	err := ipxe.CheckCmdline("console=ttyS0 rd.luks.key=hunter2")
	fmt.Println(err)
	// Output: ipxe: kernel command line must not carry secrets: key "rd.luks.key"
}
