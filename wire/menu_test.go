package wire

import (
	"errors"
	"strings"
	"testing"
)

func sampleMenu() *Menu {
	return &Menu{
		Entries: []MenuEntry{
			{ID: ImageEntryID("debian"), Kind: EntryImage, Label: "debian"},
			{ID: ImageEntryID("alpine"), Kind: EntryImage, Label: "alpine"},
			{ID: EntryLocalDiskID, Kind: EntryLocalDisk, Label: "local disk"},
		},
		Default:       ImageEntryID("debian"),
		TimeoutMillis: 10000,
	}
}

func TestMenuLargestFits(t *testing.T) {
	m := &Menu{Default: EntryLocalDiskID, TimeoutMillis: MaxMenuTimeoutMillis}
	for i := 0; len(m.Entries) < MaxMenuEntries-1; i++ {
		id := ImageEntryID(strings.Repeat(string(rune('a'+i)), MaxEntryID-len(EntryImage)-1))
		m.Entries = append(m.Entries, MenuEntry{ID: id, Kind: EntryImage, Label: strings.Repeat("l", maxEntryLabel)})
	}
	m.Entries = append(m.Entries, MenuEntry{ID: EntryLocalDiskID, Kind: EntryLocalDisk, Label: strings.Repeat("l", maxEntryLabel)})
	b, err := Marshal(m)
	if err != nil {
		t.Fatalf("largest menu does not fit its frame: %v", err)
	}
	if _, err := Unmarshal(b); err != nil {
		t.Fatalf("largest menu does not decode: %v", err)
	}
}

func TestMenuLimits(t *testing.T) {
	with := func(f func(m *Menu)) *Menu {
		m := sampleMenu()
		f(m)
		return m
	}
	for name, m := range map[string]Message{
		"one entry":           with(func(m *Menu) { m.Entries = m.Entries[:1] }),
		"too many entries":    with(func(m *Menu) { m.Entries = make([]MenuEntry, MaxMenuEntries+1) }),
		"default not offered": with(func(m *Menu) { m.Default = ImageEntryID("other") }),
		"duplicate entry":     with(func(m *Menu) { m.Entries[1] = m.Entries[0] }),
		"unknown kind":        with(func(m *Menu) { m.Entries[0].Kind = "shell" }),
		"kind and id differ":  with(func(m *Menu) { m.Entries[2].Kind = EntryImage }),
		"local disk id":       with(func(m *Menu) { m.Entries[0].Kind = EntryLocalDisk }),
		"control in label":    with(func(m *Menu) { m.Entries[0].Label = "a\x1b[2Jb" }),
		"long label":          with(func(m *Menu) { m.Entries[0].Label = strings.Repeat("l", maxEntryLabel+1) }),
		"negative timeout":    with(func(m *Menu) { m.TimeoutMillis = -1 }),
		"long timeout":        with(func(m *Menu) { m.TimeoutMillis = MaxMenuTimeoutMillis + 1 }),
		"empty choice":        &Choice{},
		"long choice":         &Choice{ID: strings.Repeat("c", MaxEntryID+1)},
		"control in choice":   &Choice{ID: "image:a\nb"},
	} {
		b, err := Marshal(m)
		if err != nil {
			continue // over the frame limit is refused too
		}
		if _, err := Unmarshal(b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s decoded: %v", name, err)
		}
	}
}
