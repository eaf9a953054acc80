package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/wardgate/wardgate/discovery"
)

// discoveryService browses for devices and announces the gateway on the
// clinical VLAN interfaces named in device_api.interfaces. With no
// interfaces configured it does nothing: devices then reach the gateway
// by a configured address.
type discoveryService struct {
	log       *slog.Logger
	browser   *discovery.Browser
	announcer *discovery.Announcer
}

func newDiscoveryService(g *Gateway) (*discoveryService, error) {
	s := &discoveryService{log: g.log}
	ifaces := g.cfg.DeviceAPI.Interfaces
	if len(ifaces) == 0 {
		return s, nil
	}
	var err error
	s.browser, err = discovery.NewBrowser(discovery.BrowserOptions{
		Interfaces: ifaces,
		Inventory:  g.inventory,
		OnEvent:    g.auditInventoryEvent,
		Logger:     g.log.With("component", "discovery"),
		Registerer: g.reg,
	})
	if err != nil {
		return nil, fmt.Errorf("starting mDNS discovery on %v: %w", ifaces, err)
	}
	port, err := devicePort(g)
	if err != nil {
		_ = s.browser.Close()
		return nil, err
	}
	s.announcer, err = discovery.NewAnnouncer(discovery.AnnouncerOptions{
		Interfaces: ifaces,
		Port:       port,
		Logger:     g.log.With("component", "announcer"),
	})
	if err != nil {
		_ = s.browser.Close()
		return nil, fmt.Errorf("starting the gateway's mDNS announcement on %v: %w", ifaces, err)
	}
	return s, nil
}

// devicePort returns the port of the first device API listener, which
// the mDNS announcement advertises.
func devicePort(g *Gateway) (uint16, error) {
	if len(g.deviceLns) == 0 {
		return 0, fmt.Errorf("device_api.interfaces is set but device_api.listen is empty: devices would find no port")
	}
	_, p, err := net.SplitHostPort(g.deviceLns[0].Addr().String())
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return uint16(n), err
}

func (s *discoveryService) run(ctx context.Context) {
	if s.browser == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.announcer.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("mDNS announcement stopped", "err", err)
		}
	}()
	if err := s.browser.Run(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("mDNS discovery stopped", "err", err)
	}
	<-done
}

// close sends the announcement's goodbye and stops browsing; it is safe
// to call twice.
func (s *discoveryService) close() {
	if s.announcer != nil {
		_ = s.announcer.Close()
	}
	if s.browser != nil {
		_ = s.browser.Close()
	}
}
