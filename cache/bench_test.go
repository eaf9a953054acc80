package cache

import (
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// BenchmarkServeCachedBlob measures device downloads of a committed 8 MiB
// blob over loopback HTTP, 16 clients at a time. scripts/bench-cache.sh
// compares the same path with nginx at larger sizes.
func BenchmarkServeCachedBlob(b *testing.B) {
	r := newTUFRepo(b)
	img := randomBytes(b, 8<<20)
	r.addTarget(metadata.TARGETS, "b.img", img, nil)
	r.publish()
	up := newUpstream(b, r)
	g := newGW(b, up)
	g.mustRefresh()
	if err := g.mirror.Prefetch(b.Context(), "b.img"); err != nil {
		b.Fatal(err)
	}
	url := g.blobURL(img)
	b.SetBytes(int64(len(img)))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := http.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != int64(len(img)) {
				b.Errorf("read %d bytes, want %d", n, len(img))
			}
		}
	})
}

// BenchmarkColdFillWithFollowers measures one upstream fill of a 4 MiB
// target followed by 16 devices that all ask for it at once.
func BenchmarkColdFillWithFollowers(b *testing.B) {
	r := newTUFRepo(b)
	var imgs [][]byte
	for i := range b.N {
		img := randomBytes(b, 4<<20)
		r.addTarget(metadata.TARGETS, "t"+itoa(i)+".img", img, nil)
		imgs = append(imgs, img)
	}
	r.publish()
	up := newUpstream(b, r)
	g := newGW(b, up)
	g.mustRefresh()
	b.SetBytes(4 << 20)
	b.ResetTimer()
	for i := range b.N {
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get(g.blobURL(imgs[i]))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	if fills := counterValue(b, g.reg, "wardgate_tuf_target_fills_total"); fills != float64(b.N) {
		b.Errorf("upstream fills: got %v, want %d", fills, b.N)
	}
}
