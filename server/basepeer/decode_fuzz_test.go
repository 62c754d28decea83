package basepeer

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sealroot/sealroot/server/image"
)

// FuzzDecodeImages checks that no peer's list panics the decoder and
// that what it accepts is valid and encodes back to itself.
func FuzzDecodeImages(f *testing.F) {
	good, _ := json.Marshal([]image.Image{{Name: "os", Version: 2, Digest: strings.Repeat("ab", 32), Size: 4096,
		TreeDigest: strings.Repeat("cd", 32), Imported: time.Unix(1, 0).UTC()}})
	for _, seed := range []string{string(good), "[]", "null", `[{"name":"os@v1","version":1,"digest":"` + strings.Repeat("0", 64) + `"}]`,
		`[{"name":"os","version":0}]`, `[{"name":"os","version":1,"digest":"x","size":-1}]`, "{", strings.Repeat("[", 1000)} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ims, err := DecodeImages(b)
		if err != nil {
			return
		}
		for _, im := range ims {
			if _, pin, err := image.ParseRef(im.Name); err != nil || pin != 0 || im.Version < 1 || im.Size < 0 || im.Size > image.MaxBaseSize {
				t.Fatalf("accepted invalid version %+v", im)
			}
			if _, err := image.DigestBytes(im.Digest); err != nil {
				t.Fatalf("accepted digest %q", im.Digest)
			}
		}
		again, err := json.Marshal(ims)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeImages(again); err != nil {
			t.Fatalf("re-encoded list refused: %v", err)
		}
	})
}

func TestDecodeImagesBounds(t *testing.T) {
	if _, err := DecodeImages(make([]byte, MaxListBytes+1)); err == nil {
		t.Error("list over MaxListBytes accepted")
	}
}
