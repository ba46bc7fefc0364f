package gen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// rng is a small, fast, deterministic random source (SplitMix64-seeded
// PCG from math/rand/v2). All randomness of a Generator flows from rng values
// seeded by Config.Seed, so the same seed always gives the same bytes.
type rng struct {
	pcg *rand.PCG
}

func newRNG(seed int64, stream uint64) *rng {
	return &rng{pcg: rand.NewPCG(uint64(seed), stream)}
}

const hexDigits = "0123456789abcdef"

// appendHex appends n random lowercase hex digits.
func (r *rng) appendHex(dst []byte, n int) []byte {
	for n > 0 {
		v := r.pcg.Uint64()
		k := 16
		if n < k {
			k = n
		}
		for i := 0; i < k; i++ {
			dst = append(dst, hexDigits[v&15])
			v >>= 4
		}
		n -= k
	}
	return dst
}

// appendUUID appends a random version-4 UUID (CloudTrail eventID style).
func (r *rng) appendUUID(dst []byte) []byte {
	a, b := r.pcg.Uint64(), r.pcg.Uint64()
	a = a&^(0xf<<12) | 4<<12
	b = b&^(3<<62) | 2<<62
	return appendUUIDBits(dst, a, b)
}

// appendVaultID appends a random id in Vault's request id form (8-4-4-4-12
// hex, no version bits).
func (r *rng) appendVaultID(dst []byte) []byte {
	return appendUUIDBits(dst, r.pcg.Uint64(), r.pcg.Uint64())
}

func appendUUIDBits(dst []byte, a, b uint64) []byte {
	var buf [36]byte
	put := func(off int, v uint64, n int) {
		for i := n - 1; i >= 0; i-- {
			buf[off+i] = hexDigits[v&15]
			v >>= 4
		}
	}
	put(0, a>>32, 8)
	buf[8] = '-'
	put(9, a>>16, 4)
	buf[13] = '-'
	put(14, a, 4)
	buf[18] = '-'
	put(19, b>>48, 4)
	buf[23] = '-'
	put(24, b, 12)
	return append(dst, buf[:]...)
}

const upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// appendUpper appends n random characters of [A-Z2-7] (AWS key id style).
func (r *rng) appendUpper(dst []byte, n int) []byte {
	for n > 0 {
		v := r.pcg.Uint64()
		k := 12
		if n < k {
			k = n
		}
		for i := 0; i < k; i++ {
			dst = append(dst, upperAlnum[v&31])
			v >>= 5
		}
		n -= k
	}
	return dst
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// appendAlnum appends n random characters of [a-zA-Z0-9].
func (r *rng) appendAlnum(dst []byte, n int) []byte {
	for i := 0; i < n; i++ {
		dst = append(dst, alnum[r.pcg.Uint64()%uint64(len(alnum))])
	}
	return dst
}

// intn returns a uniform int in [0,n).
func (r *rng) intn(n int) int {
	if n <= 1 {
		return 0
	}
	return int(r.pcg.Uint64() % uint64(n))
}

// float returns a uniform float64 in [0,1).
func (r *rng) float() float64 {
	return float64(r.pcg.Uint64()>>11) / (1 << 53)
}

// timeCache formats event times quickly: the date-and-seconds prefix is
// formatted once per distinct second.
type timeCache struct {
	sec, sec2       int64
	prefix, prefix2 [19]byte // 2006-01-02T15:04:05
}

// formatSeconds writes t as 2006-01-02T15:04:05 without the general
// layout machinery of time.Format.
func formatSeconds(b *[19]byte, t time.Time) {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	put := func(off, v, n int) {
		for i := n - 1; i >= 0; i-- {
			b[off+i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, y, 4)
	b[4] = '-'
	put(5, int(mo), 2)
	b[7] = '-'
	put(8, d, 2)
	b[10] = 'T'
	put(11, h, 2)
	b[13] = ':'
	put(14, mi, 2)
	b[16] = ':'
	put(17, s, 2)
}

func (c *timeCache) prefixFor(t time.Time) []byte {
	s := t.Unix()
	if s == c.sec && c.prefix[0] != 0 {
		return c.prefix[:]
	}
	if s == c.sec2 && c.prefix2[0] != 0 {
		return c.prefix2[:]
	}
	// Keep the two most recent seconds: event times interleave with a few
	// other times (token issue, response) that would otherwise thrash one slot.
	c.sec2, c.prefix2 = c.sec, c.prefix
	c.sec = s
	formatSeconds(&c.prefix, t.UTC())
	return c.prefix[:]
}

// appendSeconds appends t as RFC 3339 with whole seconds ("…T15:04:05Z"),
// as CloudTrail writes eventTime.
func (c *timeCache) appendSeconds(dst []byte, t time.Time) []byte {
	dst = append(dst, c.prefixFor(t)...)
	return append(dst, 'Z')
}

// appendNano appends t as Go's RFC3339Nano in UTC (trailing zeros of the
// fraction trimmed), as Vault/OpenBao write "time".
func (c *timeCache) appendNano(dst []byte, t time.Time) []byte {
	dst = append(dst, c.prefixFor(t)...)
	ns := t.Nanosecond()
	if ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		dst = append(dst, frac[:n]...)
	}
	return append(dst, 'Z')
}

func appendInt(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }
