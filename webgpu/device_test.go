package webgpu

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

var shared struct {
	once sync.Once
	dev  *Device
	err  error
}

// testDevice returns the device shared by the package's tests. Without an adapter the test is skipped,
// unless REQUIRE_GPU=1 (CI, where the Makefile installs lavapipe), where it fails.
func testDevice(t testing.TB) *Device {
	t.Helper()
	shared.once.Do(func() { shared.dev, shared.err = NewDevice() })
	if shared.err != nil {
		if errors.Is(shared.err, ErrNoAdapter) && os.Getenv("REQUIRE_GPU") != "1" {
			t.Skipf("no WebGPU adapter (REQUIRE_GPU=1 makes this a failure): %v", shared.err)
		}
		t.Fatal(shared.err)
	}
	t.Logf("adapter: %s", shared.dev.Adapter)
	return shared.dev
}

func TestDeviceLimits(t *testing.T) {
	d := testDevice(t)
	t.Logf("maxBufferSize %d, maxStorageBufferBindingSize %d", d.Limits.MaxBufferSize, d.Limits.MaxStorageBufferBindingSize)
	require.GreaterOrEqual(t, d.Limits.MaxStorageBufferBindingSize, uint64(128<<20))
	require.GreaterOrEqual(t, d.Limits.MaxBufferSize, d.Limits.MaxStorageBufferBindingSize)
	// A buffer over WebGPU's default 256 MiB maxBufferSize proves the adapter's own limit was requested.
	if d.Limits.MaxBufferSize > 300<<20 {
		_, err := d.buffer("big", 300<<20, storage)
		require.NoError(t, err)
	}
}

func TestShaderErrorIsGoError(t *testing.T) {
	d := testDevice(t)
	_, err := d.compile("broken", "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }")
	require.Error(t, err)
	t.Logf("compile error: %v", err)
	require.Contains(t, err.Error(), "broken")

	_, err = d.buffer("too big", d.Limits.MaxBufferSize+1, storage)
	require.ErrorContains(t, err, "maxBufferSize")
}

func TestValidationErrorIsGoError(t *testing.T) {
	d := testDevice(t)
	k, err := d.kernel("copy", "copy_words")
	require.NoError(t, err)
	x, err := d.buffer("x", 64, storage)
	require.NoError(t, err)
	// Binding a storage buffer where the layout wants a uniform one is a validation error.
	_, err = d.bind(k, x, x, x)
	require.Error(t, err)
	t.Logf("bind error: %v", err)
}

// Opening a device outside a desktop session prints nothing: Mesa's device-select layer would make
// libwayland print "error: XDG_RUNTIME_DIR is invalid or not set in the environment." twice. The device
// test runs again in a child process whose environment has no session, and its output is checked.
func TestDeviceQuietWithoutSession(t *testing.T) {
	if runtime.GOOS == "js" {
		t.Skip("a browser has no Vulkan layers")
	}
	testDevice(t) // skips or fails here, as every device test does, without an adapter
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == "XDG_RUNTIME_DIR" || name == "WAYLAND_DISPLAY" || name == "WAYLAND_SOCKET" || name == "NODEVICE_SELECT"
	})
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceLimits$", "-test.count=1", "-test.v")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestDeviceLimits")
	require.NotContains(t, string(out), "XDG_RUNTIME_DIR")
	require.NotContains(t, string(out), "error:")
}
