//go:build ignore

// gen draws the app's icons: go run web/icons/gen.go (writes icon-192.png and icon-512.png beside itself).
// A white speech bubble with three dots on a teal square; the bubble stays inside the central 80% circle,
// so the icons also work as maskable icons. Drawn at 4× and box-filtered down for smooth edges.
package main

import (
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

func main() {
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Dir(self)
	for _, size := range []int{192, 512} {
		if err := write(filepath.Join(dir, "icon-"+strconv.Itoa(size)+".png"), draw(size)); err != nil {
			log.Fatal(err)
		}
	}
}

const ss = 4 // supersampling factor

// draw renders the icon at size×size pixels.
func draw(size int) *image.NRGBA {
	big := size * ss
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var r, g, b float64
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					// u, v in [0, 1): position inside the icon
					u := (float64(x*ss+sx) + 0.5) / float64(big)
					v := (float64(y*ss+sy) + 0.5) / float64(big)
					c := shade(u, v)
					r, g, b = r+c[0], g+c[1], b+c[2]
				}
			}
			n := float64(ss * ss)
			img.SetNRGBA(x, y, color.NRGBA{uint8(r / n), uint8(g / n), uint8(b / n), 255})
		}
	}
	return img
}

// shade is the colour at (u, v).
func shade(u, v float64) [3]float64 {
	// background: a diagonal teal gradient
	t := (u + v) / 2
	bg := [3]float64{lerp(20, 10, t), lerp(104, 62, t), lerp(122, 78, t)}
	white := [3]float64{255, 255, 255}
	dot := [3]float64{15, 76, 92}

	// bubble: a rounded rectangle with a tail at its lower left
	inBubble := roundedRect(u, v, 0.22, 0.26, 0.78, 0.66, 0.12) ||
		triangle(u, v, 0.30, 0.60, 0.46, 0.64, 0.27, 0.78)
	if !inBubble {
		return bg
	}
	for _, cx := range []float64{0.36, 0.50, 0.64} {
		if math.Hypot(u-cx, v-0.46) < 0.055 {
			return dot
		}
	}
	return white
}

func roundedRect(u, v, x0, y0, x1, y1, r float64) bool {
	if u < x0 || u > x1 || v < y0 || v > y1 {
		return false
	}
	cx := math.Max(x0+r, math.Min(u, x1-r))
	cy := math.Max(y0+r, math.Min(v, y1-r))
	return math.Hypot(u-cx, v-cy) <= r
}

func triangle(u, v, ax, ay, bx, by, cx, cy float64) bool {
	side := func(px, py, qx, qy float64) float64 { return (qx-px)*(v-py) - (qy-py)*(u-px) }
	d1, d2, d3 := side(ax, ay, bx, by), side(bx, by, cx, cy), side(cx, cy, ax, ay)
	neg := d1 < 0 || d2 < 0 || d3 < 0
	pos := d1 > 0 || d2 > 0 || d3 > 0
	return !(neg && pos)
}

func lerp(a, b, t float64) float64 { return a + (b-a)*t }

func write(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
