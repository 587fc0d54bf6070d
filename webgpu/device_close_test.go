//go:build !js

package webgpu

import (
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
)

// The device owns every GPU object the engine makes and Close releases them all on the caller's goroutine,
// none is left to the binding's finalizers, and decoding stays right while the garbage collector runs
// without pause (issue 17: objects released by finalizers while a call still used them corrupted
// wgpu-native's memory and aborted the process).
func TestDeviceOwnsAndClosesEverything(t *testing.T) {
	testDevice(t) // fails, or skips, as every GPU test does without an adapter
	d, err := NewDevice()
	require.NoError(t, err)
	m := tinyModel(t)
	e, err := New(d, m.Config, m.Weights, 64)
	require.NoError(t, err)
	cpu := model.NewCPU(m.Config, m.Weights, 64)

	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	tok := 1
	for pos := range 24 {
		got, err := e.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
		want, err := cpu.Forward([]int{tok}, pos, false)
		require.NoError(t, err)
		require.Equal(t, argmax(want[0]), argmax(got[0]), "position %d", pos)
		tok = argmax(want[0])
	}
	close(stop)
	<-stopped

	owned := slices.Clone(d.plat.owned)
	require.NotEmpty(t, owned)
	d.Close()
	for i, obj := range owned {
		require.False(t, obj.(interface{ IsValid() bool }).IsValid(), "object %d (%T) still held after Close", i, obj)
	}
	require.Nil(t, d.dev)
	d.Close() // a second Close does nothing
}
