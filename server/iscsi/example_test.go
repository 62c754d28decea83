package iscsi_test

import (
	"context"
	"log"
	"net"

	"github.com/sealroot/sealroot/iscsi/pdu"
	"github.com/sealroot/sealroot/server/iscsi"
)

// Serve one machine's disk image as a target that only that machine,
// holding the CHAP secrets from its sealed credential, can log in to.
func ExampleServer_Serve() {
	lun, err := iscsi.OpenFile("/var/lib/sealroot/overlays/machine-a.img")
	if err != nil {
		log.Fatal(err)
	}
	defer lun.Close()
	srv := &iscsi.Server{}
	err = srv.AddTarget(&iscsi.Target{
		IQN: "iqn.2026-01.org.sealroot:machine-a",
		LUN: lun,
		Auth: &pdu.CHAP{
			User: "machine-a", Secret: "per-boot random secret",
			TargetUser: "sealroot", TargetSecret: "another per-boot random secret",
		},
		AllowInitiator: func(remote net.Addr, name string) bool {
			return remote.(*net.TCPAddr).IP.Equal(net.ParseIP("10.99.0.7"))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "10.99.0.1:3260") // the tunnel address only
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(context.Background(), ln))
}
