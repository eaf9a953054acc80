package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mDNS transport constants (RFC 6762).
var (
	mdnsGroup4 = netip.MustParseAddr("224.0.0.251")
	mdnsAddr4  = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: mdnsPort}
)

const (
	mdnsPort = 5353
	// maxPacket is the largest mDNS message this package sends. It keeps
	// a message inside one 1500-byte Ethernet frame after the IPv4 and
	// UDP headers, so no response depends on IP fragmentation.
	maxPacket = 1400
	// recvBuffer is the socket receive buffer requested, so that a burst
	// of answers from hundreds of devices to one query is queued by the
	// kernel instead of dropped while the reader catches up.
	recvBuffer = 4 << 20
)

// DeviceServiceType is the DNS-SD service type that devices announce.
const DeviceServiceType = "_wardgate-device._tcp"

// GatewayServiceType is the DNS-SD service type the gateway announces.
const GatewayServiceType = "_wardgate._tcp"

var serviceTypePattern = regexp.MustCompile(`^_[A-Za-z0-9](?:[A-Za-z0-9-]{0,13}[A-Za-z0-9])?\._(?:tcp|udp)$`)

// validateServiceType checks a DNS-SD service type such as "_ipp._tcp"
// by the rules of RFC 6763 section 7: a service name of 1 to 15 letters,
// digits and hyphens, then "_tcp" or "_udp".
func validateServiceType(s string) error {
	if !serviceTypePattern.MatchString(s) {
		return fmt.Errorf("invalid service type %q: use \"_name._tcp\" or \"_name._udp\" with a name of 1 to 15 letters, digits and hyphens", s)
	}
	return nil
}

// netInterface is a resolved clinical VLAN interface.
type netInterface struct {
	name     string
	index    int
	ifi      *net.Interface
	prefixes []netip.Prefix
}

// resolveInterface looks up an interface by name and checks that it can
// carry mDNS.
func resolveInterface(name string) (netInterface, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netInterface{}, fmt.Errorf("looking up interface %q: %w; name an existing clinical VLAN interface", name, err)
	}
	if ifi.Flags&net.FlagMulticast == 0 {
		return netInterface{}, fmt.Errorf("interface %q has no MULTICAST flag, so it cannot carry mDNS; use a VLAN or Ethernet interface", name)
	}
	n := netInterface{name: name, index: ifi.Index, ifi: ifi}
	n.prefixes, err = interfacePrefixes(ifi)
	if err != nil {
		return netInterface{}, err
	}
	return n, nil
}

// interfacePrefixes returns the interface's IPv4 and IPv6 prefixes.
func interfacePrefixes(ifi *net.Interface) ([]netip.Prefix, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("reading addresses of interface %q: %w", ifi.Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		addr, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		out = append(out, netip.PrefixFrom(addr.Unmap(), ones))
	}
	return out, nil
}

// ipv4Addrs returns the IPv4 addresses among prefixes.
func ipv4Addrs(prefixes []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range prefixes {
		if p.Addr().Is4() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// linkLocal4 is the IPv4 link-local range (RFC 3927), which a device
// without a DHCP lease uses on any link.
var linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")

// onLink reports whether addr is on one of the interface's subnets. RFC
// 6762 section 11 has receivers check that a response came from the local
// link, and the browser uses the same check to attribute results that do
// not carry an interface index.
func (n netInterface) onLink(addr netip.Addr) bool {
	addr = addr.Unmap()
	if linkLocal4.Contains(addr) || addr.Is6() && addr.IsLinkLocalUnicast() {
		return true
	}
	return n.inSubnet(addr)
}

// inSubnet reports whether addr is in one of the interface's subnets,
// other than the link-local ones that every interface has.
func (n netInterface) inSubnet(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range n.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// mdnsConn is one IPv4 UDP socket on port 5353 that has joined the mDNS
// group on a set of interfaces. Each packet read carries the index of
// the interface it arrived on, and each packet written names the
// interface it leaves by, so one socket serves several VLANs without
// mixing them up.
type mdnsConn struct {
	conn net.PacketConn
	pc   *ipv4.PacketConn
}

// listenMDNS opens the socket and joins the group on each interface.
func listenMDNS(ifaces []netInterface) (*mdnsConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// SO_REUSEADDR and SO_REUSEPORT let other mDNS stacks on the
			// host (avahi, the announcer, hashicorp/mdns queries) bind
			// port 5353 too. The kernel gives each a copy of every
			// multicast packet.
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				return
			}
			// Without IP_MULTICAST_ALL=0 Linux delivers the group's packets
			// from every interface on which any socket joined it.
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); serr != nil {
				return
			}
			// SO_RCVBUFFORCE exceeds net.core.rmem_max but needs
			// CAP_NET_ADMIN; fall back to SO_RCVBUF, which the kernel caps.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuffer) != nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuffer)
			}
		})
		return errors.Join(err, serr)
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", mdnsPort))
	if err != nil {
		return nil, fmt.Errorf("binding UDP port %d: %w", mdnsPort, err)
	}
	pc := ipv4.NewPacketConn(conn)
	m := &mdnsConn{conn: conn, pc: pc}
	if err := pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("enabling packet info on the mDNS socket: %w", err)
	}
	// RFC 6762 section 11: mDNS packets are sent with IP TTL 255.
	if err := pc.SetMulticastTTL(255); err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting multicast TTL: %w", err)
	}
	if err := pc.SetMulticastLoopback(true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("enabling multicast loopback: %w", err)
	}
	for _, n := range ifaces {
		if err := pc.JoinGroup(n.ifi, &net.UDPAddr{IP: mdnsAddr4.IP}); err != nil {
			conn.Close()
			return nil, fmt.Errorf("joining the mDNS group on interface %q: %w", n.name, err)
		}
	}
	return m, nil
}

// packetInfo is the arrival interface and source of a packet.
type packetInfo struct {
	ifIndex int
	src     netip.AddrPort
	// multicast is true when the packet was sent to the mDNS group
	// rather than to this host.
	multicast bool
}

// read reads one packet into buf.
func (m *mdnsConn) read(buf []byte) (int, packetInfo, error) {
	n, cm, src, err := m.pc.ReadFrom(buf)
	if err != nil {
		return 0, packetInfo{}, err
	}
	var info packetInfo
	if ua, ok := src.(*net.UDPAddr); ok {
		info.src = ua.AddrPort()
		info.src = netip.AddrPortFrom(info.src.Addr().Unmap(), info.src.Port())
	}
	if cm != nil {
		info.ifIndex = cm.IfIndex
		info.multicast = cm.Dst.Equal(mdnsAddr4.IP)
	}
	return n, info, nil
}

// sendMulticast sends b to the mDNS group out of the interface ifIndex.
func (m *mdnsConn) sendMulticast(b []byte, ifIndex int) error {
	_, err := m.pc.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifIndex}, mdnsAddr4)
	return err
}

// sendUnicast sends b to dst out of the interface ifIndex.
func (m *mdnsConn) sendUnicast(b []byte, ifIndex int, dst netip.AddrPort) error {
	_, err := m.pc.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifIndex}, net.UDPAddrFromAddrPort(dst))
	return err
}

func (m *mdnsConn) close() error { return m.conn.Close() }
