// A device with a tuf-js client: refreshes metadata from the gateway's
// TUF mirror, looks up one target and downloads it through the mirror's
// targets path. Input is one JSON argument:
//   {"metadataBaseUrl", "targetBaseUrl", "metadataDir", "targetDir", "target",
//    "timeoutMs", "deadlineMs"}
// metadataDir must hold the trusted root.json. Prints one JSON line:
//   {"ok": true, "path": FILE, "length": N} or {"ok": false, "error": MESSAGE}
'use strict';
const path = require('path');
const fs = require('fs');
const { Updater } = require('tuf-js');

async function main() {
  const opts = JSON.parse(process.argv[2]);
  const updater = new Updater({
    metadataBaseUrl: opts.metadataBaseUrl,
    targetBaseUrl: opts.targetBaseUrl,
    metadataDir: opts.metadataDir,
    targetDir: opts.targetDir,
    config: { fetchTimeout: opts.timeoutMs || 5000, fetchRetry: 0 },
  });
  await updater.refresh();
  const info = await updater.getTargetInfo(opts.target);
  if (!info) {
    throw new Error(`target ${opts.target} not found`);
  }
  const file = path.join(opts.targetDir, 'download');
  await updater.downloadTarget(info, file);
  return { ok: true, path: file, length: fs.statSync(file).size };
}

// tuf-js's fetchTimeout ends only a socket that goes idle, not a body
// that trickles in; a device needs a deadline for the whole update, or a
// slow retrieval attack holds it forever.
function deadline(ms) {
  return new Promise((_, reject) => {
    setTimeout(() => reject(new Error(`update deadline of ${ms} ms exceeded`)), ms).unref();
  });
}

Promise.race([main(), deadline(JSON.parse(process.argv[2]).deadlineMs || 30000)]).then(
  (res) => { process.stdout.write(JSON.stringify(res) + '\n'); },
  (err) => {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message || err) }) + '\n');
    process.exit(0);
  },
);
