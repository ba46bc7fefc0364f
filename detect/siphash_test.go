package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"auditwatch/detect/state"
)

// TestSipHash128Vectors checks sipHash128 against the reference
// implementation's vectors_sip128 (key 00 01 .. 0f, message 00 01 .. n-1).
func TestSipHash128Vectors(t *testing.T) {
	want := map[int]string{
		0:  "a3817f04ba25a8e66df67214c7550293",
		1:  "da87c1d86b99af44347659119b22fc45",
		7:  "a1f1ebbed8dbc153c0b84aa61ff08239",
		8:  "3b62a9ba6258f5610f83e264f31497b4",
		15: "5493e99933b0a8117e08ec0f97cfc3d9",
		16: "6ee2a4ca67b054bbfd3315bf85230577",
		63: "5150d1772f50834a503e069a973fbd7c",
	}
	var key [16]byte
	msg := make([]byte, 64)
	for i := range key {
		key[i] = byte(i)
	}
	for i := range msg {
		msg[i] = byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	for n, w := range want {
		h0, h1 := sipHash128(k0, k1, msg[:n])
		var out [16]byte
		binary.LittleEndian.PutUint64(out[:8], h0)
		binary.LittleEndian.PutUint64(out[8:], h1)
		if got := hex.EncodeToString(out[:]); got != w {
			t.Errorf("len %d: got %s, want %s", n, got, w)
		}
	}
}

// TestHashKeyPersists checks that a store keeps the key its entries are
// stored under: a new store gets a random key at its first checkpoint and
// a reopened store reads it back; a store checkpointed before keys were
// keyed stays on SHA-256 keys.
func TestHashKeyPersists(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	e := newEngine(t, Config{}, st, nil)
	if e.hkey.legacy || e.hkey == (hashKey{}) {
		t.Fatalf("new store: key %+v, want a random non-legacy key", e.hkey)
	}
	first := e.hkey
	if err := e.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openStore(t, dir)
	e = newEngine(t, Config{}, st, nil)
	if e.hkey != first {
		t.Fatalf("reopened store: key %+v, want %+v", e.hkey, first)
	}
	if a, b := e.h.sum("p", "x"), (&hasher{k: &first}).sum("p", "x"); a != b {
		t.Fatalf("reopened store hashes differently: %x vs %x", a, b)
	}
	st.Close()

	// a store written by a version without a hash key
	dir2 := t.TempDir()
	st = openStore(t, dir2)
	var b state.Batch
	b.Put(spaceEngine, keyClock, []byte(`{}`))
	if err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	e = newEngine(t, Config{}, st, nil)
	if !e.hkey.legacy {
		t.Fatalf("legacy store: key %+v, want legacy", e.hkey)
	}
	sha := sha256.Sum256([]byte{1, 'p', 1, 'x'})
	if got := e.h.sum("p", "x"); !bytes.Equal(got[:], sha[:16]) {
		t.Fatalf("legacy store key %x, want SHA-256 prefix %x", got, sha[:16])
	}
	st.Close()
}

// TestHasherMemo checks that the memo never answers with another parts'
// key: every sum equals the hash computed afresh, for repeated, equal but
// separately built, prefix-sharing and split-differently parts, under a
// key and in legacy mode.
func TestHasherMemo(t *testing.T) {
	for _, hk := range []*hashKey{{k0: 1, k1: 2}, {legacy: true}, nil} {
		h := hasher{k: hk}
		fresh := hasher{k: hk}
		rng := rand.New(rand.NewPCG(1, 2))
		pool := []string{"", "a", "ab", "abc", "p", "w", "arn:aws:iam::1:user/alice", "secret/data/x"}
		for i := 0; i < 64; i++ {
			pool = append(pool, fmt.Sprintf("principal-%d", i))
		}
		for i := 0; i < 200_000; i++ {
			n := 1 + rng.IntN(3)
			parts := make([]string, n)
			for j := range parts {
				s := pool[rng.IntN(len(pool))]
				if rng.IntN(4) == 0 {
					s = strings.Clone(s) // same text, another string
				}
				parts[j] = s
			}
			got, want := h.sum(parts...), fresh.compute(parts)
			if got != want {
				t.Fatalf("sum(%q) = %x, want %x", parts, got, want)
			}
		}
		// split differently: the parts, not their concatenation, decide
		if h.sum("ab", "c") == h.sum("a", "bc") || h.sum("ab") == h.sum("a", "b") || h.sum("a", "") == h.sum("a") {
			t.Fatal("different parts share a key")
		}
		// a repeated sum is answered from the memo
		k := h.sum("p", pool[9])
		remembered := false
		for _, m := range h.memo {
			remembered = remembered || m.n == 2 && m.a == "p" && m.b == pool[9] && m.k == k
		}
		if !remembered {
			t.Fatal("the memo does not hold the last sum")
		}
	}
}
