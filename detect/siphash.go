package detect

import (
	"encoding/binary"
	"math/bits"
)

// sipHash128 is SipHash-2-4 with its 128-bit output (Aumasson and
// Bernstein), keyed by k0, k1. A keyed PRF: without the key, nobody can
// choose principals or resources that collide, yet the same key always
// gives the same value, so keys stay stable across restarts when the key
// is persisted with the state.
func sipHash128(k0, k1 uint64, p []byte) (uint64, uint64) {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d ^ 0xee
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	n := len(p)
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	for len(p) >= 8 {
		m := binary.LittleEndian.Uint64(p)
		v3 ^= m
		round()
		round()
		v0 ^= m
		p = p[8:]
	}
	var last [8]byte
	copy(last[:], p)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	round()
	round()
	v0 ^= m

	v2 ^= 0xee
	round()
	round()
	round()
	round()
	h0 := v0 ^ v1 ^ v2 ^ v3
	v1 ^= 0xdd
	round()
	round()
	round()
	round()
	return h0, v0 ^ v1 ^ v2 ^ v3
}
