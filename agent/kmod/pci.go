package kmod

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// pciClassNetwork is the PCI base class of network controllers.
const pciClassNetwork = "0x02"

// nicDrivers returns the shipped modules whose aliases match the modalias
// of a PCI network controller, in device order.
func (l *loader) nicDrivers() []string {
	devs, _ := filepath.Glob(filepath.Join(l.opts.SysDir, "bus/pci/devices/*"))
	sort.Strings(devs)
	var mods []string
	seen := map[string]bool{}
	for _, dev := range devs {
		class, err := os.ReadFile(filepath.Join(dev, "class"))
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(class)), pciClassNetwork) {
			continue
		}
		modalias, err := os.ReadFile(filepath.Join(dev, "modalias"))
		if err != nil {
			continue
		}
		for _, m := range l.ix.resolve(strings.TrimSpace(string(modalias))) {
			if !seen[m] {
				seen[m] = true
				mods = append(mods, m)
			}
		}
	}
	return mods
}
