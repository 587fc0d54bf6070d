package safetensors

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBF16FromFloat32(t *testing.T) {
	f := math.Float32frombits
	for _, tc := range []struct {
		name string
		in   uint32
		want uint16
	}{
		{"zero", 0x00000000, 0x0000},
		{"negative zero", 0x80000000, 0x8000},
		{"one", 0x3f800000, 0x3f80},
		{"exact", 0x3fc00000, 0x3fc0},
		{"below half rounds down", 0x3f807fff, 0x3f80},
		{"above half rounds up", 0x3f808001, 0x3f81},
		{"tie to even stays (even)", 0x3f808000, 0x3f80},
		{"tie to even rounds up (odd)", 0x3f818000, 0x3f82},
		{"negative tie to even", 0xbf818000, 0xbf82},
		{"carry into exponent", 0x3fffffff, 0x4000},
		{"max float rounds to inf", 0x7f7fffff, 0x7f80},
		{"largest finite bf16 stays", 0x7f7f0000, 0x7f7f},
		{"just below overflow tie to even", 0x7f7f7fff, 0x7f7f},
		{"tie at max rounds to inf", 0x7f7f8000, 0x7f80},
		{"+inf", 0x7f800000, 0x7f80},
		{"-inf", 0xff800000, 0xff80},
		{"smallest subnormal rounds to zero", 0x00000001, 0x0000},
		{"subnormal exact", 0x00010000, 0x0001},
		{"subnormal tie to even down", 0x00018000, 0x0002},
		{"subnormal tie even stays", 0x00008000, 0x0000},
		{"subnormal above half", 0x00008001, 0x0001},
		{"largest subnormal rounds to min normal", 0x007fffff, 0x0080},
		{"negative subnormal", 0x80010000, 0x8001},
		{"quiet NaN", 0x7fc00000, 0x7fc0},
		{"negative NaN", 0xffc00000, 0xffc0},
		{"NaN payload only in low bits stays NaN", 0x7f800001, 0x7fc0},
		{"signalling NaN keeps high payload", 0x7f810000, 0x7fc1},
		{"NaN all ones", 0x7fffffff, 0x7fff},
	} {
		got := BF16FromFloat32(f(tc.in))
		require.Equalf(t, tc.want, got, "%s: %#08x -> %#04x, want %#04x", tc.name, tc.in, got, tc.want)
	}
}

func TestBF16NaNNeverBecomesInf(t *testing.T) {
	for low := uint32(1); low < 1<<23; low += 4099 {
		for _, sign := range []uint32{0, 1 << 31} {
			in := math.Float32frombits(sign | 0x7f800000 | low)
			out := Float32FromBF16(BF16FromFloat32(in))
			require.True(t, math.IsNaN(float64(out)), "%#x", math.Float32bits(in))
			require.Equal(t, sign != 0, math.Signbit(float64(out)))
		}
	}
}

func TestBF16RoundTrip(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		b := uint16(i)
		f := Float32FromBF16(b)
		require.Equal(t, uint32(b)<<16, math.Float32bits(f))
		if math.IsNaN(float64(f)) {
			// Quiet bit is forced; sign and rest of payload kept.
			require.Equal(t, b|0x0040, BF16FromFloat32(f))
			continue
		}
		require.Equal(t, b, BF16FromFloat32(f))
	}
}

func TestBF16NearestAgainstFloat64(t *testing.T) {
	// Randomised check against a float64 reference: the result is one of the
	// two neighbours and at least as close as the other.
	x := uint32(12345)
	for i := 0; i < 200000; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		f := math.Float32frombits(x)
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		got := Float32FromBF16(BF16FromFloat32(f))
		lo := Float32FromBF16(uint16(x >> 16))
		hi := Float32FromBF16(uint16(x>>16) + 1)
		if math.IsInf(float64(hi), 0) {
			continue // rounding past the largest finite value: covered above
		}
		dg := math.Abs(float64(got) - float64(f))
		dlo := math.Abs(float64(lo) - float64(f))
		dhi := math.Abs(float64(hi) - float64(f))
		require.True(t, got == lo || got == hi, "%#x", x)
		require.LessOrEqual(t, dg, math.Min(dlo, dhi), "%#x", x)
	}
}
