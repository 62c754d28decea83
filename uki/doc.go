// Package uki builds and reads unified kernel images (UKIs): a systemd EFI
// stub (Debian's systemd-boot-efi, linuxx64.efi.stub) with the kernel,
// initramfs, command line and os-release added as PE sections, so that one
// EFI application carries the whole boot and every part of it is measured.
//
// It also computes the Authenticode SHA-256 digest of a PE image, the
// digest UEFI firmware extends into PCR 4 when it loads an EFI application
// (EV_EFI_BOOT_SERVICES_APPLICATION).
//
// Build is a small PE writer, not objcopy: it copies the stub's headers
// and sections unchanged, drops the stub's trailing COFF symbol table,
// appends one section per part at page-aligned addresses past the stub's
// last section, and fixes NumberOfSections, SizeOfImage,
// SizeOfInitializedData and the PE checksum. The output depends only on its
// inputs, so a UKI is reproducible byte for byte.
//
// The parsers bound every offset and never panic on arbitrary input; they
// are meant for artifacts the server serves, but are fuzzed anyway.
package uki
