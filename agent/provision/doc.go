// Package provision prepares the booted system in the new root just before
// switch_root, from the decrypted credential payload:
//
//   - Secrets: the machine's operator secrets become files
//     SecretsDir/NAME (directory 0700, files 0400, owned by root) in a
//     tmpfs mounted on the initramfs's /run, which switch_root moves over
//     the new root's /run. They are never written to the persistent root.
//     The root's own per-boot secrets (iSCSI CHAP) are not handed on.
//   - Hostname: the machine's name becomes the kernel hostname unless the
//     image sets one in /etc/hostname; systemd keeps a hostname set
//     before it starts when /etc/hostname is absent.
//   - Files: the operator's configuration files are written into the new
//     root at their paths, resolved as the booted system will see them
//     (symlinks inside the root, never out of it), replacing whatever is
//     there atomically.
//
// Nothing here logs or prints a secret value.
package provision
