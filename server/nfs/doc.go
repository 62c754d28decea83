// Package nfs serves machines' file-level roots over NFSv4 with
// nfs-ganesha, run as a supervised child process.
//
// Each machine's root is an overlayfs mount ([MountOverlay]) of a
// read-only, content-addressed base tree (image.Store's
// trees/sha256-<hex>/) under the machine's own upper directory, with
// index=on and nfs_export=on so that NFS file handles survive. An upper is
// tied to the lower it was made on: the kernel refuses another lower with
// ESTALE, reported as [ErrBaseChanged].
//
// [Ganesha] runs ganesha.nfsd with a generated configuration ([Render]):
// NFSv4.1/4.2 only, no rpcbind, NLM or DBus, numeric owners, and a grace
// period with recovery records so that clients reclaim their open files
// after a restart. Every export is closed by default and opened, without
// root squashing, to its one machine's tunnel address only
// ([RenderExports]): read-write, or read-only for a volatile machine's
// shared base; other machines do not even see its name in the pseudo root. [Ganesha.WriteExports] rewrites the
// %include'd exports file and reloads it with SIGHUP, one reload at a time: exports written during a reload
// are served together by the next one, so a boot storm's exports cost a few reloads, not one each.
//
// ganesha must share sealroot's mount namespace, or overlays mounted after
// it starts stay invisible to it: run it in another network namespace with
// `nsenter --net=...`, never `ip netns exec`. It needs real root.
package nfs
