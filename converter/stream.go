package converter

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/x448/float16"

	"github.com/ilmweb/ilmweb/internal/safefile"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/safetensors"
)

// The conversion pipeline. Source rows are read with ReadAt (never through the checkpoint's memory
// mapping: mapped pages would count towards the process's RSS) in jobs of about chunkBytes, by one
// goroutine reading ahead; workers on every core decode and quantize them; one writer appends the results
// to the shards in order, hashing as it goes. A fixed set of buffers circulates between them, so memory
// stays bounded whatever the model size.

// chunkBytes is about how many source bytes one job reads.
const chunkBytes = 4 << 20

type conversion struct {
	opts       *Options
	in         *input
	man        *model.Manifest
	dir        string  // output directory (the temporary sibling of DST)
	shardSizes []int64 // planned by layout
}

// job is rows [r0, r1) of one part of a tensor.
type job struct {
	src    *srcTensor
	tensor int // index in man.Tensors
	part   int
	r0, r1 int
}

// buffers carries one job's input and output between a worker and the writer.
type buffers struct {
	raw          []byte
	row          []float32
	data, scales []uint32
	out, outSc   []byte // data and scales as little-endian bytes
	st           errStats
	err          error
}

func (c *conversion) jobs() (jobs []job, total int64) {
	for ti := range c.man.Tensors {
		t, src := &c.man.Tensors[ti], &c.in.tensors[ti]
		rowIn := int64(t.Cols() * src.dtype.Size())
		per := int(max(1, chunkBytes/rowIn))
		for pi, p := range t.Parts {
			for r0 := p.Rows[0]; r0 < p.Rows[1]; r0 += per {
				jobs = append(jobs, job{src, ti, pi, r0, min(r0+per, p.Rows[1])})
			}
		}
		total += int64(t.Rows()) * rowIn
	}
	return jobs, total
}

func (c *conversion) run(ctx context.Context) error {
	readers := map[string]*os.File{}
	for _, t := range c.in.tensors {
		if readers[t.path] == nil {
			f, err := safefile.Open(t.path)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			defer f.Close()
			readers[t.path] = f
		}
	}
	jobs, total := c.jobs()
	workers := c.opts.Workers
	free := make(chan *buffers, 2*workers+2)
	for range cap(free) {
		free <- &buffers{}
	}
	results := make([]chan *buffers, len(jobs))
	for i := range results {
		results[i] = make(chan *buffers, 1)
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// One goroutine reads ahead, in job order, into free buffers, and the workers decode and encode what it
	// read: so the disk is read while every core quantizes. (Workers that read for themselves left their
	// core idle while a read waited for the disk.)
	type work struct {
		i int
		b *buffers
	}
	queue := make(chan work, cap(free))
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(queue)
		for i, j := range jobs {
			var b *buffers
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
			b.err = c.read(j, readers[j.src.path], b)
			select {
			case queue <- work{i, b}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range queue {
				if w.b.err == nil && ctx.Err() == nil {
					w.b.err = c.encode(jobs[w.i], w.b)
				}
				results[w.i] <- w.b // buffered, and each job is sent once: never blocks
			}
		}()
	}

	w := &shardWriter{c: c, index: -1}
	defer w.abort()
	stats := make([]errStats, len(c.man.Tensors))
	var done int64
	for i, j := range jobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		var b *buffers
		select {
		case b = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.err != nil {
			return b.err
		}
		p := &c.man.Tensors[j.tensor].Parts[j.part]
		if j.r0 == p.Rows[0] {
			if err := w.seek(p.Shard, p.Data.Offset); err != nil {
				return err
			}
		}
		if err := w.write(b.out); err != nil {
			return err
		}
		w.scales = append(w.scales, b.outSc...)
		if j.r1 == p.Rows[1] && p.Scales != nil {
			if err := w.seek(p.Shard, p.Scales.Offset); err != nil {
				return err
			}
			if err := w.write(w.scales); err != nil {
				return err
			}
			w.scales = w.scales[:0]
		}
		stats[j.tensor].add(b.st)
		done += int64(len(b.raw))
		free <- b
		if c.opts.Progress != nil {
			c.opts.Progress("convert", done, total)
		}
	}
	if err := w.finish(); err != nil {
		return err
	}
	for i := range c.man.Tensors {
		c.man.Tensors[i].Error = model.TensorError{RelRMSE: stats[i].relRMSE(), MaxAbs: stats[i].maxAbs}
	}
	return nil
}

// read reads one job's source rows into b.raw.
func (c *conversion) read(j job, f *os.File, b *buffers) error {
	t, src := &c.man.Tensors[j.tensor], j.src
	rowIn := t.Cols() * src.dtype.Size()
	b.raw = resize(b.raw, (j.r1-j.r0)*rowIn)
	if _, err := f.ReadAt(b.raw, src.offset+int64(j.r0)*int64(rowIn)); err != nil {
		return fmt.Errorf("%s: tensor %q: read: %v", src.path, src.Name, err)
	}
	return nil
}

// encode checks and encodes one job's rows, read into b.raw, into b.
func (c *conversion) encode(j job, b *buffers) error {
	t, src := &c.man.Tensors[j.tensor], j.src
	cols, n := t.Cols(), j.r1-j.r0
	rowIn := cols * src.dtype.Size()
	dataRow, scaleRow := t.RowBytes(c.man.Quant.GroupSize)
	dw, sw := int(dataRow/4), int(scaleRow/4)
	b.row = resize(b.row, cols)
	b.data = resize(b.data, n*dw)
	b.scales = resize(b.scales, n*sw)
	b.st = errStats{}
	for r := range n {
		if k := decodeRow(b.row, b.raw[r*rowIn:(r+1)*rowIn], src.dtype); k >= 0 {
			at := fmt.Sprintf("[%d, %d]", j.r0+r, k)
			if len(t.Shape) == 1 {
				at = fmt.Sprintf("[%d]", k)
			}
			return fmt.Errorf("%s: tensor %q: %v at %s", src.path, src.Name, b.row[k], at)
		}
		err := encodeRows(t.DType, c.man.Quant.GroupSize, b.row, cols, b.data[r*dw:(r+1)*dw], b.scales[r*sw:(r+1)*sw], &b.st)
		if err != nil {
			return fmt.Errorf("%s: tensor %q: row %d: %v", src.path, src.Name, j.r0+r, err)
		}
	}
	b.out = appendWords(b.out[:0], b.data)
	b.outSc = appendWords(b.outSc[:0], b.scales)
	return nil
}

// decodeRow widens one row of little-endian BF16, F16 or F32 values to float32 and returns the index of
// the first NaN or infinity, or -1.
func decodeRow(dst []float32, raw []byte, dt safetensors.DType) int {
	const f32Exp = 0x7f800000
	switch dt {
	case safetensors.BF16:
		raw = raw[:2*len(dst)]
		// A bf16 value is the top half of its float32. Eight at a time from two 64-bit loads, checked
		// together: a value's exponent bits e = h & 0x7f80 are all ones iff e + 0x80 carries into bit 15.
		// (Every weight passes through here, so this runs ~9 G times for an 8B model.)
		const exps, carry, top = 0x7f807f807f807f80, 0x0080008000800080, 0x8000800080008000
		i := 0
		for ; i+8 <= len(dst); i += 8 {
			r, d := (*[16]byte)(raw[2*i:]), (*[8]float32)(dst[i:]) // one bounds check each per 8 values
			w0, w1 := binary.LittleEndian.Uint64(r[:8]), binary.LittleEndian.Uint64(r[8:])
			if ((w0&exps+carry)|(w1&exps+carry))&top != 0 {
				break // a NaN or infinity among these eight: found below
			}
			d[0], d[1] = math.Float32frombits(uint32(w0)<<16), math.Float32frombits(uint32(w0)&0xffff0000)
			d[2], d[3] = math.Float32frombits(uint32(w0>>32)<<16), math.Float32frombits(uint32(w0>>32)&0xffff0000)
			d[4], d[5] = math.Float32frombits(uint32(w1)<<16), math.Float32frombits(uint32(w1)&0xffff0000)
			d[6], d[7] = math.Float32frombits(uint32(w1>>32)<<16), math.Float32frombits(uint32(w1>>32)&0xffff0000)
		}
		for ; i < len(dst); i++ {
			bits := uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16
			dst[i] = math.Float32frombits(bits)
			if bits&f32Exp == f32Exp {
				return i
			}
		}
	case safetensors.F16:
		raw = raw[:2*len(dst)]
		for i := range dst {
			h := binary.LittleEndian.Uint16(raw[2*i:])
			dst[i] = float16.Frombits(h).Float32()
			if h&0x7c00 == 0x7c00 {
				return i
			}
		}
	case safetensors.F32:
		raw = raw[:4*len(dst)]
		for i := range dst {
			bits := binary.LittleEndian.Uint32(raw[4*i:])
			dst[i] = math.Float32frombits(bits)
			if bits&f32Exp == f32Exp {
				return i
			}
		}
	}
	return -1
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func appendWords(dst []byte, words []uint32) []byte {
	for _, w := range words {
		dst = binary.LittleEndian.AppendUint32(dst, w)
	}
	return dst
}

// shardWriter writes the shards one after the other, each to a temporary name first and renamed to its
// content-addressed name once complete.
type shardWriter struct {
	c      *conversion
	index  int // shard being written, -1 before the first
	f      io.WriteCloser
	h      hash.Hash
	pos    int64
	scales []byte // the current part's scales, written after its data
}

func (w *shardWriter) partialName() string {
	return filepath.Join(w.c.dir, fmt.Sprintf("shard-%05d.partial", w.index))
}

// seek moves to offset off of shard (the current one or the next), writing zeros up to it.
func (w *shardWriter) seek(shard int, off int64) error {
	if shard != w.index {
		if err := w.finish(); err != nil {
			return err
		}
		if shard != w.index+1 {
			return fmt.Errorf("internal error: shard %d written after shard %d", shard, w.index)
		}
		w.index, w.pos, w.h = shard, 0, sha256.New()
		f, err := w.c.opts.create(w.partialName())
		if err != nil {
			return fmt.Errorf("create shard %d: %w", shard, err)
		}
		w.f = f
	}
	if off < w.pos || off-w.pos >= model.ArrayAlign {
		return fmt.Errorf("internal error: shard %d: offset %d after writing %d bytes", shard, off, w.pos)
	}
	var zeros [model.ArrayAlign]byte
	return w.write(zeros[:off-w.pos])
}

func (w *shardWriter) write(p []byte) error {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.pos += int64(n)
	if err != nil {
		return fmt.Errorf("write shard %d at byte %d: %w", w.index, w.pos, err)
	}
	return nil
}

// finish closes the current shard, checks its size against the layout and gives it its final name.
func (w *shardWriter) finish() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("write shard %d: %w", w.index, err)
	}
	if w.pos != w.c.shardSizes[w.index] {
		return fmt.Errorf("internal error: shard %d has %d bytes, planned %d", w.index, w.pos, w.c.shardSizes[w.index])
	}
	sum := hex.EncodeToString(w.h.Sum(nil))
	name := model.ShardName(w.index, sum)
	if err := os.Rename(w.partialName(), filepath.Join(w.c.dir, name)); err != nil {
		return fmt.Errorf("write shard %d: %w", w.index, err)
	}
	w.c.man.Shards = append(w.c.man.Shards, model.FileEntry{Name: name, Bytes: w.pos, SHA256: sum})
	w.c.man.TotalBytes += w.pos
	return nil
}

// abort closes a shard left open by an error (the directory is removed by Convert).
func (w *shardWriter) abort() {
	if w.f != nil {
		w.f.Close()
	}
}

// writeFile writes one of the small files beside the manifest.
func (c *conversion) writeFile(name string, data []byte) error {
	f, err := c.opts.create(filepath.Join(c.dir, name))
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
