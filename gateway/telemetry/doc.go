// Package telemetry owns the gateway's telemetry relay: the device
// telemetry endpoint (schema, limits, per-device rate limits, allow-list),
// the durable queue in badger (key prefix "tq/"), de-identified aggregation
// with small-cell and complementary suppression, and exactly-once delivery
// to wardhub through an Uploader, with a local record of every export
// (key prefix "tx/").
//
// # Device schema
//
// A device POSTs one JSON object per request:
//
//	{
//	  "schema": 1,                      // optional, must be 1
//	  "batch_id": "2026-12-04T10:00:00Z-17",  // optional; a retried batch with the same id counts once
//	  "events": [
//	    {"kind": "counter",   "name": "power_cycles", "value": 1},
//	    {"kind": "procedure", "name": "infusion.start"},
//	    {"kind": "runtime",   "name": "pump", "value": 0.25},
//	    {"kind": "error",     "name": "E-1042", "value": 2},
//	    {"kind": "health",    "name": "battery_pct", "value": 87}
//	  ]
//	}
//
// Kinds: counter (usage counter increment, whole 0..1e9, default 1),
// procedure (procedure count by code, whole 1..1e6, default 1), runtime
// (hours 0..1e5, required), error (occurrences of an error code, whole
// 1..1e6, default 1), health (a device-health value named in HealthMetrics,
// within its range, required). Counter, procedure and runtime names are
// lower-case codes ([a-z][a-z0-9_.]*, at most 48 bytes); error codes are
// [A-Za-z0-9_.-], at most 32 bytes. A name is an aggregation dimension, so a
// name used by fewer devices than the small-cell threshold never leaves.
//
// Unknown fields are dropped (and named in the response); events of an
// unknown kind or health metric are dropped and counted. Everything else
// that does not fit fails the whole batch: 400 for malformed JSON, 413 for
// a body over IngestOptions.MaxBodyBytes or more than MaxEvents events, 415
// for a content type other than application/json, 422 for values outside
// the schema, 429 with Retry-After over the device's rate, 503 with
// Retry-After while the queue or disk is full. 200 means the batch is
// synced to disk.
//
// Events carry no time: the gateway stamps each batch when it stores it,
// and only the start of the aggregation period holding that time goes
// upstream. Device clocks on isolated networks are not trusted, and a
// period closes exactly when the gateway's clock passes its end.
//
// # Delivery
//
// The Relay seals closed periods into a wire.Payload, stores the payload,
// its idempotency key "site:seq" and the advanced queue watermark in one
// badger transaction, and only then uploads it; it retries the same bytes
// with the same key until the hub acknowledges them, one upload at a time in
// sequence order. The hub deduplicates on the key, so each event counts
// once however often the gateway or the tunnel goes down.
package telemetry
