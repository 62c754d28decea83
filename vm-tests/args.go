package vmtest

import "strconv"

// Args returns QEMU's command line (without the program name).
func (vm *VM) Args() []string {
	o := vm.opts
	cpu := "max"
	if o.NoHardwareRNG {
		cpu = "qemu64" // no RDRAND/RDSEED
	}
	args := []string{
		"-name", o.Name,
		"-accel", "tcg", // KVM hangs guests on the development host
		"-cpu", cpu,
		"-m", strconv.Itoa(o.MemoryMB),
		"-nodefaults", "-nographic", "-monitor", "none", "-serial", "stdio",
		"-no-reboot",
	}
	args = append(args, vm.firmwareArgs()...)
	args = append(args, vm.tpmArgs()...)
	args = append(args, vm.netArgs()...)
	if !o.NoHardwareRNG {
		args = append(args, "-device", "virtio-rng-pci")
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel, "-append", o.Append)
		if o.Initrd != "" {
			args = append(args, "-initrd", o.Initrd)
		}
	}
	return append(args, o.ExtraArgs...)
}

func (vm *VM) firmwareArgs() []string {
	if vm.opts.Firmware != UEFI {
		return []string{"-machine", "pc"}
	}
	if vm.opts.SecureBoot {
		code := OVMFCodeSnakeoil
		if vm.opts.MicrosoftKeys {
			code = OVMFCodeSecboot
		}
		// Debian's Secure Boot OVMF requires SMM to protect its variables.
		return []string{
			"-machine", "q35,smm=on",
			"-global", "driver=cfi.pflash01,property=secure,value=on",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
			"-drive", "if=pflash,format=raw,unit=1,file=" + vm.varsPath(),
		}
	}
	return []string{
		"-machine", "q35",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vm.varsPath(),
	}
}

func (vm *VM) tpmArgs() []string {
	if vm.opts.TPM == nil {
		return nil
	}
	dev := "tpm-tis"
	if vm.opts.Firmware == UEFI {
		dev = "tpm-crb"
	}
	return []string{
		"-chardev", "socket,id=chrtpm,path=" + vm.sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", dev + ",tpmdev=tpm0",
	}
}

// netArgs attaches a virtio NIC to the VM's tap. With PXE it keeps QEMU's
// default option ROM (Debian: /usr/lib/ipxe/qemu/efi-virtio.rom, iPXE for
// both BIOS and UEFI) and boots from it first; with NativePXE it has no ROM
// and the firmware's own PXE client boots from it first.
func (vm *VM) netArgs() []string {
	dev := "virtio-net-pci,netdev=n0,mac=" + vm.opts.MAC.String()
	switch {
	case vm.opts.NativePXE:
		dev += ",romfile=,bootindex=1"
	case vm.opts.PXE:
		dev += ",bootindex=1"
	default:
		dev += ",romfile="
	}
	return []string{
		"-netdev", "tap,id=n0,ifname=" + vm.tap + ",script=no,downscript=no",
		"-device", dev,
	}
}
