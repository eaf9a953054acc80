// Package nettest holds loopback network fixtures for tunnel tests: a
// UDP relay that drops, delays or blackholes datagrams in either
// direction, and an HTTP CONNECT proxy that can require Basic
// credentials, refuse, cut its tunnels, or inspect TLS with its own
// certificate the way hospital proxies do.
package nettest

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// UDPRelay forwards datagrams between clients and one target. "Up" is
// client to target, "down" target to client. Dropped datagrams vanish
// without an ICMP error, as on a path that a firewall blackholes.
type UDPRelay struct {
	conn   *net.UDPConn
	target *net.UDPAddr

	mu                 sync.Mutex
	sessions           map[string]*relaySession
	lossUp, lossDown   float64
	blockUp, blockDown bool
	delay              time.Duration
	forwarded, dropped int
	closed             bool
	wg                 sync.WaitGroup
}

type relaySession struct {
	client *net.UDPAddr
	up     *net.UDPConn
}

// NewUDPRelay listens on a loopback port and forwards to target.
func NewUDPRelay(target string) (*UDPRelay, error) {
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &UDPRelay{conn: conn, target: taddr, sessions: map[string]*relaySession{}}
	r.wg.Add(1)
	go r.serveUp()
	return r, nil
}

// Addr is the address clients send to.
func (r *UDPRelay) Addr() string { return r.conn.LocalAddr().String() }

// SetLoss sets the probability, 0 to 1, that a datagram is dropped in
// each direction.
func (r *UDPRelay) SetLoss(up, down float64) {
	r.mu.Lock()
	r.lossUp, r.lossDown = up, down
	r.mu.Unlock()
}

// Block drops every datagram in the directions set to true.
func (r *UDPRelay) Block(up, down bool) {
	r.mu.Lock()
	r.blockUp, r.blockDown = up, down
	r.mu.Unlock()
}

// SetDelay delays every forwarded datagram by d.
func (r *UDPRelay) SetDelay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

// Counts returns how many datagrams were forwarded and dropped.
func (r *UDPRelay) Counts() (forwarded, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forwarded, r.dropped
}

// pass decides a datagram's fate and returns its delay.
func (r *UDPRelay) pass(up bool) (bool, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	block, loss := r.blockDown, r.lossDown
	if up {
		block, loss = r.blockUp, r.lossUp
	}
	if block || (loss > 0 && rand.Float64() < loss) {
		r.dropped++
		return false, 0
	}
	r.forwarded++
	return true, r.delay
}

func (r *UDPRelay) serveUp() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s, err := r.session(from)
		if err != nil {
			continue
		}
		ok, delay := r.pass(true)
		if !ok {
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		send := func() { _, _ = s.up.Write(pkt) }
		if delay > 0 {
			time.AfterFunc(delay, send)
		} else {
			send()
		}
	}
}

func (r *UDPRelay) session(client *net.UDPAddr) (*relaySession, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, net.ErrClosed
	}
	if s, ok := r.sessions[client.String()]; ok {
		return s, nil
	}
	up, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil, err
	}
	s := &relaySession{client: client, up: up}
	r.sessions[client.String()] = s
	r.wg.Add(1)
	go r.serveDown(s)
	return s, nil
}

func (r *UDPRelay) serveDown(s *relaySession) {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable while the target restarts: keep
			// the session; the target may come back.
			continue
		}
		ok, delay := r.pass(false)
		if !ok {
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		send := func() { _, _ = r.conn.WriteToUDP(pkt, s.client) }
		if delay > 0 {
			time.AfterFunc(delay, send)
		} else {
			send()
		}
	}
}

// Close stops the relay and waits for its goroutines.
func (r *UDPRelay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for _, s := range r.sessions {
		s.up.Close()
	}
	r.mu.Unlock()
	err := r.conn.Close()
	r.wg.Wait()
	return err
}
