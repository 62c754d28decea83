package tpmtest

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// WriteNV defines an NV index through the platform hierarchy, as a TPM
// manufacturer provisions EK certificates (platform-created, readable with
// the owner or the index's empty password), and writes data to it.
func WriteNV(tpm transport.TPM, index uint32, data []byte) error {
	pub := tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true,
			NoDA: true, PlatformCreate: true,
		},
		DataSize: uint16(len(data)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: tpm2.TPMRHPlatform, PublicInfo: tpm2.New2B(pub)}).Execute(tpm); err != nil {
		return fmt.Errorf("tpm2.NVDefineSpace(%#x): %w", index, err)
	}
	pub.Attributes.Written = true
	name, err := tpm2.NVName(&pub)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 512 {
		_, err := tpm2.NVWrite{
			AuthHandle: tpm2.TPMRHPlatform,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: *name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:min(off+512, len(data))]},
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			return fmt.Errorf("tpm2.NVWrite(%#x at %d): %w", index, off, err)
		}
	}
	return nil
}

// ReadNV reads a whole NV index with its empty password.
func ReadNV(tpm transport.TPM, index uint32) ([]byte, error) {
	h := tpm2.TPMHandle(index)
	pub, err := tpm2.NVReadPublic{NVIndex: h}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm2.NVReadPublic(%#x): %w", index, err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	var out []byte
	for off := 0; off < int(nv.DataSize); off += 512 {
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: h, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: h, Name: pub.NVName},
			Size:       uint16(min(512, int(nv.DataSize)-off)),
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("tpm2.NVRead(%#x at %d): %w", index, off, err)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}

// UndefineNV removes a platform-created NV index, as on a TPM that ships
// without that certificate. A missing index is not an error.
func UndefineNV(tpm transport.TPM, index uint32) error {
	h := tpm2.TPMHandle(index)
	pub, err := tpm2.NVReadPublic{NVIndex: h}.Execute(tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tpm2.NVReadPublic(%#x): %w", index, err)
	}
	_, err = tpm2.NVUndefineSpace{
		AuthHandle: tpm2.TPMRHPlatform,
		NVIndex:    tpm2.NamedHandle{Handle: h, Name: pub.NVName},
	}.Execute(tpm)
	if err != nil {
		return fmt.Errorf("tpm2.NVUndefineSpace(%#x): %w", index, err)
	}
	return nil
}
