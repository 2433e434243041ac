// @actions/cache (the client actions/cache runs) saving or restoring one key, for bench/gha.py:
//   node bench/gha_client.mjs save|restore KEY PATH...
// It is loaded from tests/gha/clients (FERRY_BENCH_CLIENTS), where tests/gha/run.sh installs
// the pinned version. Exits 1 when the client did not save or did not hit exactly: it warns
// instead of throwing.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [, , op, key, ...paths] = process.argv;
// An ES module is found from the importing file, not the working folder: the package's own
// entry point, as its `exports` name it.
const pkg = path.join(process.env.FERRY_BENCH_CLIENTS, 'node_modules', '@actions', 'cache');
const manifest = JSON.parse(readFileSync(path.join(pkg, 'package.json'), 'utf8'));
const entry = manifest.exports?.['.']?.import ?? manifest.main;
const mod = await import(pathToFileURL(path.join(pkg, entry)).href);
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
