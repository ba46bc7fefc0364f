package hostiletest

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// The nested bomb is what the issue names: about 1 KB that unpacks to
// 10 GiB (checked by unpacking two layers and the size of the third).
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
	zr, err := gzip.NewReader(bytes.NewReader(l))
	if err != nil {
		t.Fatal(err)
	}
	size, err := io.Copy(io.Discard, io.LimitReader(zr, 11<<30))
	if err != nil || size != 10<<30 {
		t.Fatalf("innermost layer unpacks to %d bytes (%v), want 10 GiB", size, err)
	}
}
