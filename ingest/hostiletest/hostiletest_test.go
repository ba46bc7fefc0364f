package hostiletest

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// The nested bomb is what the issue names: under 1 KB that unpacks to
// 10 GiB (checked by unpacking two layers and counting the third's
// members).
func TestNestedBombSize(t *testing.T) {
	n := NestedBomb()
	if len(n) > 1024 {
		t.Fatalf("nested bomb is %d bytes, want <= 1 KB", len(n))
	}
	l := n
	for range 2 {
		zr, err := gzip.NewReader(bytes.NewReader(l))
		if err != nil {
			t.Fatal(err)
		}
		if l, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	// the innermost layer is 10,240 members of 1 MiB of zeros each
	if !bytes.Equal(l, FlatBomb(10)) {
		t.Fatalf("innermost layer is %d bytes, not the 10 GiB flat bomb", len(l))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zeroMember()))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	if size, err := io.Copy(io.Discard, zr); err != nil || size != 1<<20 {
		t.Fatalf("one member unpacks to %d bytes (%v), want 1 MiB", size, err)
	}
	if len(l)%len(zeroMember()) != 0 || len(l)/len(zeroMember()) != 10<<10 {
		t.Fatalf("innermost layer holds %d/%d members, want 10240", len(l), len(zeroMember()))
	}
}
