// Package tpmtest provides real TPMs for tests: the go-tpm-tools simulator
// (in process, cgo) and swtpm (a child process on a unix socket), plus
// small helpers to extend and read PCRs.
//
// The simulator is a process-wide singleton: at most one may be open at a
// time, so tests using it must not call t.Parallel. Every Simulator call
// manufactures a fresh TPM with new random seeds, i.e. a different EK and a
// different machine identity; Sim.Reboot keeps the identity and resets the
// PCRs; SimulatorWithSeed gives a reproducible identity.
//
// SWTPM skips the test when swtpm is not installed, except when the
// environment has CI=true, where a missing tool fails the test.
package tpmtest
