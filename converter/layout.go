package converter

import (
	"fmt"
	"sort"

	"github.com/ilmweb/ilmweb/model"
)

// layout places every tensor in shards before anything is written: each 2-D tensor is cut into as few
// row blocks (parts) of near-equal size as let every part fit in one shard and every array in one
// WebGPU binding (model.MaxArrayBytes); a part goes into the current shard if it fits after the last
// array (256-byte aligned), else starts the next shard. 1-D tensors are one f32 row. It fills in the
// tensors' Parts and returns the size of each shard.
func layout(tensors []model.TensorEntry, group int, shardSize int64) ([]int64, error) {
	var shards []int64 // bytes used in each shard
	for i := range tensors {
		t := &tensors[i]
		if err := model.CheckShape(t.DType, t.Rows(), t.Cols(), group); err != nil {
			return nil, fmt.Errorf("tensor %q: %v", t.Name, err)
		}
		dataRow, scaleRow := t.RowBytes(group)
		// partBytes is the span a part of n rows takes from its data offset to the end of its scales.
		partBytes := func(n int) (data, total int64) {
			data = int64(n) * dataRow
			if scaleRow == 0 {
				return data, data
			}
			return data, alignUp(data) + int64(n)*scaleRow
		}
		fits := func(n int) bool {
			data, total := partBytes(n)
			return total <= shardSize && data <= model.MaxArrayBytes && int64(n)*scaleRow <= model.MaxArrayBytes
		}
		maxRows := sort.Search(t.Rows(), func(n int) bool { return !fits(n + 1) })
		if maxRows < 1 {
			_, need := partBytes(1)
			return nil, fmt.Errorf("tensor %q: a row of %d bytes does not fit in a %d-byte shard", t.Name, need, shardSize)
		}
		nParts := (t.Rows() + maxRows - 1) / maxRows
		per := (t.Rows() + nParts - 1) / nParts
		t.Parts = nil
		for r0 := 0; r0 < t.Rows(); r0 += per {
			r1 := min(r0+per, t.Rows())
			dataBytes, total := partBytes(r1 - r0)
			off := int64(0)
			if n := len(shards); n > 0 && alignUp(shards[n-1])+total <= shardSize {
				off = alignUp(shards[n-1])
			} else {
				shards = append(shards, 0)
			}
			p := model.Part{Rows: model.RowRange{r0, r1}, Shard: len(shards) - 1, Data: model.Span{Offset: off, Bytes: dataBytes}}
			if scaleRow > 0 {
				p.Scales = &model.Span{Offset: alignUp(off + dataBytes), Bytes: int64(r1-r0) * scaleRow}
			}
			shards[len(shards)-1] = off + total
			t.Parts = append(t.Parts, p)
		}
	}
	return shards, nil
}

func alignUp(n int64) int64 { return (n + model.ArrayAlign - 1) / model.ArrayAlign * model.ArrayAlign }
