// A device with a tuf-js client: refreshes metadata from the gateway's
// TUF mirror, looks up one target and downloads it through the mirror's
// targets path. Input is one JSON argument:
//   {"metadataBaseUrl", "targetBaseUrl", "metadataDir", "targetDir", "target"}
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

main().then(
  (res) => { process.stdout.write(JSON.stringify(res) + '\n'); },
  (err) => {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message || err) }) + '\n');
  },
);
