package blob

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// dropBlob removes a committed blob, so benchmarks can fill the same
// content again without filling the disk.
func dropBlob(s *Store, sha string) {
	s.mu.Lock()
	if s.blobs[sha] == nil {
		s.mu.Unlock()
		return
	}
	v := s.dropLocked(sha, EventEvicted, "benchmark")
	s.mu.Unlock()
	s.removeVictims([]victim{v})
}

// BenchmarkFill measures one producer writing a 64 MiB blob in 64 KiB
// chunks while N followers read it to the end. MB/s and ns/op include the
// commit's fsync, rename and index write. follow-MB/s is the blob size
// over the time until the last follower reached the end, which comes
// before the fsync, and delivered-MB/s multiplies that by the followers.
func BenchmarkFill(b *testing.B) {
	const size = 64 << 20
	const chunk = 64 << 10
	data := content(42, size)
	for _, followers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("followers=%d", followers), func(b *testing.B) {
			env := newEnv(b, Options{})
			s := env.store
			b.SetBytes(size)
			b.ReportAllocs()
			var follow time.Duration
			iterations := 0
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				binary.LittleEndian.PutUint64(data, uint64(i))
				d := digestOf(data, false)
				b.StartTimer()
				start := time.Now()
				f, err := s.Begin(d)
				if err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				var mu sync.Mutex
				var last time.Time
				for range followers {
					r := f.NewReader()
					wg.Go(func() {
						defer r.Close()
						buf := make([]byte, 256<<10)
						n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf)
						if err != nil || n != size {
							b.Errorf("follower: read %d bytes, err %v", n, err)
						}
						end := time.Now()
						mu.Lock()
						if end.After(last) {
							last = end
						}
						mu.Unlock()
					})
				}
				for off := 0; off < size; off += chunk {
					if _, err := f.Write(data[off : off+chunk]); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Commit(); err != nil {
					b.Fatal(err)
				}
				wg.Wait()
				follow += last.Sub(start)
				iterations++
				b.StopTimer()
				dropBlob(s, d.Hex())
				b.StartTimer()
			}
			perSecond := float64(size) * float64(iterations) / follow.Seconds() / 1e6
			b.ReportMetric(perSecond, "follow-MB/s")
			b.ReportMetric(perSecond*float64(followers), "delivered-MB/s")
		})
	}
}

// BenchmarkOpenRead100MiB opens a committed 100 MiB blob and reads it
// through (page cache warm), as a plain HTTP download would.
func BenchmarkOpenRead100MiB(b *testing.B) {
	const size = 100 << 20
	env := newEnv(b, Options{})
	sha := fillWith(b, env.store, content(43, size)).Hex()
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		f, n, err := env.store.Open(sha)
		if err != nil {
			b.Fatal(err)
		}
		got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		if err != nil || got != n {
			b.Fatalf("read %d of %d bytes: %v", got, n, err)
		}
		f.Close()
	}
}

// BenchmarkOpenSendfile100MiB opens a committed 100 MiB blob and copies
// it to a loopback TCP connection with io.Copy, which the kernel does
// with sendfile because File embeds *os.File.
func BenchmarkOpenSendfile100MiB(b *testing.B) {
	const size = 100 << 20
	env := newEnv(b, Options{})
	sha := fillWith(b, env.store, content(44, size)).Hex()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(received)
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for {
			var got int64
			for got < size {
				n, err := c.Read(buf[:min(int64(len(buf)), size-got)])
				got += int64(n)
				if err != nil {
					received <- got
					return
				}
			}
			received <- got
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		f, n, err := env.store.Open(sha)
		if err != nil {
			b.Fatal(err)
		}
		if sent, err := io.Copy(conn, f); err != nil || sent != n {
			b.Fatalf("sent %d of %d bytes: %v", sent, n, err)
		}
		f.Close()
		if got := <-received; got != n {
			b.Fatalf("peer received %d of %d bytes", got, n)
		}
	}
}
