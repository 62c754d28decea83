package config

import "reflect"

// BootRestartFields lists the JSON paths of the boot fields whose change needs new
// listeners or a new DHCP service.
func BootRestartFields(cur, next *BootConfig) []string {
	a, b := *cur, *next
	for _, c := range []*BootConfig{&a, &b} { // the live fields
		c.ArtifactsDir, c.Kernel, c.Initrd, c.UKI, c.Cmdline = "", "", "", "", ""
		c.AttestServers = nil
	}
	var out []string
	for _, f := range ChangedFields(a, b) {
		out = append(out, "boot."+f)
	}
	return out
}

// ChangedFields lists the JSON names of the top-level fields of two
// structs of the same type that differ.
func ChangedFields[T any](a, b T) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name, _ := jsonFieldName(va.Type().Field(i))
			out = append(out, name)
		}
	}
	return out
}

func jsonFieldName(sf reflect.StructField) (string, bool) {
	tag := sf.Tag.Get("json")
	for i := 0; i < len(tag); i++ {
		if tag[i] == ',' {
			tag = tag[:i]
			break
		}
	}
	if tag == "" {
		return sf.Name, false
	}
	return tag, true
}
