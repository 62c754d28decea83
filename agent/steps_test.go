package agent

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"testing"
)

func TestRunSteps(t *testing.T) {
	boom := errors.New("server refused: pcr 7 changed")
	var ran []string
	step := func(name string, err error) Step {
		return Step{Name: name, Run: func(context.Context) error { ran = append(ran, name); return err }}
	}
	var console bytes.Buffer
	timings, err := RunSteps(context.Background(), &console, []Step{
		step("dhcp", nil), step("attest", boom), step("root", nil),
	})
	if len(timings) != 2 || timings[0].Name != "dhcp" || timings[1].Name != "attest" {
		t.Errorf("RunSteps timings = %+v, want dhcp and attest", timings)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != "attest" || !errors.Is(err, boom) {
		t.Fatalf("RunSteps() = %v, want a *StepError for attest wrapping %v", err, boom)
	}
	if len(ran) != 2 {
		t.Errorf("ran %v, want to stop after attest", ran)
	}
	want := regexp.MustCompile(`^sealroot: \[ok\] dhcp \(\d+\.\d\ds\)\n` +
		`sealroot: \[FAILED\] attest \(\d+\.\d\ds\): server refused: pcr 7 changed\n$`)
	if !want.Match(console.Bytes()) {
		t.Errorf("console =\n%s\nwant it to match %s", console.String(), want)
	}
}

func TestRunStepsAllOK(t *testing.T) {
	var console bytes.Buffer
	ok := func(context.Context) error { return nil }
	if _, err := RunSteps(context.Background(), &console, []Step{{"a", ok}, {"b", ok}}); err != nil {
		t.Fatalf("RunSteps() = %v", err)
	}
	if got := bytes.Count(console.Bytes(), []byte("[ok]")); got != 2 {
		t.Errorf("console has %d [ok] lines, want 2:\n%s", got, console.String())
	}
}
