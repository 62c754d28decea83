package menu

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/wire"
)

func testMenu(timeout time.Duration) *wire.Menu {
	return &wire.Menu{
		Entries: []wire.MenuEntry{
			{ID: wire.ImageEntryID("debian"), Kind: wire.EntryImage, Label: "debian"},
			{ID: wire.ImageEntryID("alpine"), Kind: wire.EntryImage, Label: "alpine"},
			{ID: wire.EntryLocalDiskID, Kind: wire.EntryLocalDisk, Label: "local disk"},
		},
		Default:       wire.EntryLocalDiskID,
		TimeoutMillis: timeout.Milliseconds(),
	}
}

func TestAsk(t *testing.T) {
	tests := []struct {
		name     string
		firmware string
		typed    []string
		want     string
		wantOut  string
	}{
		{"timeout_takes_default", "uefi", nil, wire.EntryLocalDiskID, "booting local disk (default, timeout)"},
		{"number_chooses", "uefi", []string{"2"}, wire.ImageEntryID("alpine"), "booting alpine (chosen)"},
		{"junk_then_number", "uefi", []string{"x", "9", " 1 "}, wire.ImageEntryID("debian"), `"x" is not an entry`},
		{"bios_default_falls_back", "bios", nil, wire.ImageEntryID("debian"), "local disk: not available on this BIOS machine"},
		{"bios_local_disk_not_chosen", "bios", []string{"3"}, wire.ImageEntryID("debian"), `"3" is not an entry`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := make(chan string, len(tt.typed))
			for _, l := range tt.typed {
				lines <- l
			}
			var out bytes.Buffer
			got, err := New(testMenu(200*time.Millisecond), tt.firmware).Ask(context.Background(), &out, lines)
			if err != nil || got != tt.want {
				t.Fatalf("Ask = %q, %v, want %q", got, err, tt.want)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("console:\n%s\nwant %q", out.String(), tt.wantOut)
			}
		})
	}
}

func TestShowSaysNoLocalDisk(t *testing.T) {
	m := testMenu(time.Second)
	m.Entries, m.Default, m.NoLocalDisk = m.Entries[:2], m.Entries[0].ID, true
	var out bytes.Buffer
	New(m, "bios").Show(&out)
	if !strings.Contains(out.String(), "local disk: not available on this BIOS machine") {
		t.Fatalf("menu:\n%s\nwant the local disk said not available", out.String())
	}
}

func TestAskControlCharactersNotEchoed(t *testing.T) {
	m := testMenu(50 * time.Millisecond)
	m.Entries[0].Label = "deb\x1b[2Jian"
	var out bytes.Buffer
	lines := make(chan string, 1)
	lines <- "\x1b]0;x\x07"
	New(m, "uefi").Ask(context.Background(), &out, lines)
	if strings.ContainsAny(out.String(), "\x1b\x07") {
		t.Fatalf("console got control characters: %q", out.String())
	}
}

func TestAskEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(testMenu(time.Hour), "uefi").Ask(ctx, io.Discard, nil); err != context.Canceled {
		t.Fatalf("Ask = %v, want context.Canceled", err)
	}
}

func TestLinesStopEndsReaders(t *testing.T) {
	r1, w1 := io.Pipe()
	r2, _ := io.Pipe() // never written: its reader blocks until stop
	lines, stop := Lines(r1, r2)
	go w1.Write([]byte("1\n"))
	if got := <-lines; got != "1" {
		t.Fatalf("line = %q", got)
	}
	stop()
	stop() // safe twice
	if _, ok := <-lines; ok {
		t.Fatal("lines open after stop")
	}
}
