package menu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
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
		disk     LocalDisk
		typed    []string
		want     string
		wantOut  string
	}{
		{"timeout_takes_default", "uefi", LocalDisk{}, nil, wire.EntryLocalDiskID, "booting local disk (default, timeout)"},
		{"number_chooses", "uefi", LocalDisk{}, []string{"2"}, wire.ImageEntryID("alpine"), "booting alpine (chosen)"},
		{"junk_then_number", "uefi", LocalDisk{}, []string{"x", "9", " 1 "}, wire.ImageEntryID("debian"), `"x" is not an entry`},
		{"bios_default_falls_back", "bios", LocalDisk{}, nil, wire.ImageEntryID("debian"), "local disk: not available on this BIOS machine"},
		{"bios_local_disk_not_chosen", "bios", LocalDisk{}, []string{"3"}, wire.ImageEntryID("debian"), `"3" is not an entry`},
		{"no_local_entry_default_falls_back", "uefi", LocalDisk{Missing: errNoEntry}, nil, wire.ImageEntryID("debian"),
			"the default, local disk, cannot boot: no local disk entry"},
		{"no_local_entry_not_chosen", "uefi", LocalDisk{Missing: errNoEntry}, []string{"3"}, wire.ImageEntryID("debian"), `"3" is not an entry`},
		{"came_back_default_falls_back", "uefi", LocalDisk{CameBack: errCameBack}, nil, wire.ImageEntryID("debian"),
			"the default, local disk, did not boot last time: came back"},
		{"came_back_person_may_choose", "uefi", LocalDisk{CameBack: errCameBack}, []string{"3"}, wire.EntryLocalDiskID, "booting local disk (chosen)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := make(chan string, len(tt.typed))
			for _, l := range tt.typed {
				lines <- l
			}
			var out bytes.Buffer
			got, err := New(testMenu(200*time.Millisecond), tt.firmware, tt.disk).Ask(context.Background(), &out, lines)
			if err != nil || got != tt.want {
				t.Fatalf("Ask = %q, %v, want %q", got, err, tt.want)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("console:\n%s\nwant %q", out.String(), tt.wantOut)
			}
		})
	}
}

var (
	errNoEntry  = errors.New("no local disk entry in BootOrder")
	errCameBack = errors.New("came back through the network")
)

// TestAskWaitsForAPersonWithoutADefault: a menu whose only entry is a
// local disk that came back takes nothing on timeout (no reboot loop)
// and waits for a person, who may still choose it.
func TestAskWaitsForAPersonWithoutADefault(t *testing.T) {
	m := testMenu(50 * time.Millisecond)
	m.Entries = m.Entries[2:]
	lines := make(chan string)
	var out syncBuffer
	done := make(chan string)
	go func() {
		id, _ := New(m, "uefi", LocalDisk{CameBack: errCameBack}).Ask(context.Background(), &out, lines)
		done <- id
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case id := <-done:
		t.Fatalf("Ask took %q with no entry to take by default", id)
	default:
	}
	lines <- "1"
	if id := <-done; id != wire.EntryLocalDiskID {
		t.Fatalf("Ask = %q, want the person's choice, local disk", id)
	}
	if !strings.Contains(out.String(), "no entry may be taken by default: waiting for a choice") {
		t.Errorf("console:\n%s\nwant the wait said", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestShowSaysNoLocalDisk(t *testing.T) {
	m := testMenu(time.Second)
	m.Entries, m.Default, m.NoLocalDisk = m.Entries[:2], m.Entries[0].ID, true
	var out bytes.Buffer
	New(m, "bios", LocalDisk{}).Show(&out)
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
	New(m, "uefi", LocalDisk{}).Ask(context.Background(), &out, lines)
	if strings.ContainsAny(out.String(), "\x1b\x07") {
		t.Fatalf("console got control characters: %q", out.String())
	}
}

func TestAskEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(testMenu(time.Hour), "uefi", LocalDisk{}).Ask(ctx, io.Discard, nil); err != context.Canceled {
		t.Fatalf("Ask = %v, want context.Canceled", err)
	}
}
