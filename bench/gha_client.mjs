// @actions/cache (the client actions/cache runs) saving or restoring one key, for bench/gha.py:
//   node bench/gha_client.mjs save|restore KEY PATH...
// It is loaded from tests/gha/clients (FERRY_BENCH_CLIENTS), where tests/gha/run.sh installs
// the pinned version. Exits 1 when the client did not save or did not hit exactly: it warns
// instead of throwing.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [, , op, key, ...paths] = process.argv;
const clients = process.env.FERRY_BENCH_CLIENTS;
const require = createRequire(path.join(clients, 'package.json'));
const mod = await import(pathToFileURL(require.resolve('@actions/cache')).href);
const cache = mod.saveCache ? mod : mod.default;

if (op === 'save') {
  const id = await cache.saveCache(paths, key);
  if (!(id > 0)) {
    console.error(`@actions/cache did not save ${key} (${id})`);
    process.exit(1);
  }
} else if (op === 'restore') {
  const hit = await cache.restoreCache(paths, key, []);
  if (hit !== key) {
    console.error(`@actions/cache did not restore ${key} (${hit})`);
    process.exit(1);
  }
} else {
  console.error('usage: gha_client.mjs save|restore KEY PATH...');
  process.exit(2);
}
