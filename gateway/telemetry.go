package gateway

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/gateway/telemetry"
)

// telemetryService wires the device telemetry endpoint, the durable queue
// and the relay that uploads aggregates over the tunnel.
type telemetryService struct {
	g      *Gateway
	queue  *telemetry.Queue
	relay  *telemetry.Relay
	ingest http.Handler
}

func newTelemetryService(g *Gateway) (*telemetryService, error) {
	q, err := telemetry.OpenQueue(g.db, telemetry.QueueOptions{
		Dir: filepath.Join(g.cfg.DataDir, "db"),
		OnFull: func(full bool, reason error) {
			if full {
				g.log.Error("ALERT: telemetry queue refuses device batches until there is room", "reason", reason)
			} else {
				g.log.Info("telemetry queue accepts device batches again")
			}
		},
		Logger:     g.log,
		Registerer: g.reg,
	})
	if err != nil {
		return nil, err
	}
	s := &telemetryService{g: g, queue: q}
	s.ingest = telemetry.NewIngestHandler(q, g.telemetryIdentity, telemetry.IngestOptions{
		Logger:     g.log,
		Registerer: g.reg,
	})
	if g.tunnel == nil || g.siteID == "" {
		g.log.Warn("telemetry is queued but not relayed: the gateway is not enrolled with a hub")
		return s, nil
	}
	s.relay, err = telemetry.NewRelay(q, &telemetry.HTTPUploader{Client: g.tunnel.HTTPClient(), URL: "https://wardhub/v1/telemetry"}, telemetry.RelayOptions{
		SiteID:                 g.siteID,
		Period:                 time.Duration(g.cfg.Telemetry.Period),
		MinCellDevices:         g.cfg.Telemetry.MinCellDevices,
		PerDeviceManufacturers: g.cfg.Telemetry.PerDeviceManufacturers,
		Audit:                  g.audit,
		Logger:                 g.log,
		Registerer:             g.reg,
	})
	if err != nil {
		_ = q.Close()
		return nil, err
	}
	return s, nil
}

func (s *telemetryService) handler() http.Handler { return s.ingest }

func (s *telemetryService) run(ctx context.Context) {
	if s.relay == nil {
		<-ctx.Done()
		return
	}
	if err := s.relay.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		s.g.log.Error("telemetry relay stopped", "err", err)
	}
}

// flush closes the current period and uploads what is pending, within
// ctx; what does not make it stays queued for the next start.
func (s *telemetryService) flush(ctx context.Context) {
	if s.relay == nil {
		return
	}
	if err := s.relay.Flush(ctx); err != nil {
		s.g.log.Warn("telemetry flush incomplete; the rest stays queued", "err", err)
	}
}

// releasesChanged is called after a refresh; the relay needs nothing
// from it yet.
func (s *telemetryService) releasesChanged() {}

func (s *telemetryService) close() {
	if s.relay != nil {
		_ = s.relay.Close()
	}
	_ = s.queue.Close()
}

// telemetryIdentity maps a request to the device behind its client
// certificate, with the model and version from the inventory.
func (g *Gateway) telemetryIdentity(r *http.Request) (telemetry.DeviceIdentity, bool) {
	id, err := identify(r)
	if err != nil {
		return telemetry.DeviceIdentity{}, false
	}
	dev, err := g.inventory.Get(r.Context(), id.Manufacturer, id.Serial)
	if err != nil || dev.Model == "" || dev.Version == "" {
		// The device must check in with its model and version first.
		return telemetry.DeviceIdentity{}, false
	}
	class := dev.DeviceClass
	if class == "" {
		class = "unspecified"
	}
	return telemetry.DeviceIdentity{
		Manufacturer:    dev.Manufacturer,
		Serial:          dev.Serial,
		Model:           dev.Model,
		SoftwareVersion: dev.Version,
		DeviceClass:     class,
	}, true
}
