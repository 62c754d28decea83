// Package version reports which sealroot this binary is: the release
// version and the source commit. Release builds set both with
//
//	-ldflags "-X github.com/sealroot/sealroot/version.version=1.2.0
//	          -X github.com/sealroot/sealroot/version.commit=<sha>"
//
// (make build, make deb and `sealroot initramfs build` do). Otherwise they
// come from the Go build information: the module version when built with
// `go install ...@v1.2.0`, the VCS revision when built in a checkout.
package version

import (
	"runtime/debug"
	"strings"
)

// Set by the linker (-X); the only writers. Empty: use the build info.
var (
	version string
	commit  string
)

// Dev is the version of a build with no version information.
const Dev = "dev"

// Version is the release version, e.g. "1.2.0", or "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return strings.TrimPrefix(bi.Main.Version, "v")
	}
	return Dev
}

// Commit is the source revision, with "-dirty" when the checkout had local
// changes, or "unknown".
func Commit() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return "unknown"
	}
	return rev + dirty
}

// String is the version and commit on one line, e.g. "1.2.0 (commit 1a2b3c4d5e6f)",
// with the commit shortened to 12 digits.
func String() string {
	c := Commit()
	if len(c) > 12 && !strings.HasSuffix(c, "-dirty") {
		c = c[:12]
	} else if len(c) > 18 {
		c = c[:12] + "-dirty"
	}
	return Version() + " (commit " + c + ")"
}

// LDFlags are the linker flags that stamp another binary (the agent built
// for an initramfs) with this binary's version and commit.
func LDFlags() string {
	const pkg = "github.com/sealroot/sealroot/version."
	return "-X " + pkg + "version=" + Version() + " -X " + pkg + "commit=" + Commit()
}
