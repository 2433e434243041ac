// ferry's gha:// store beside GitHub's own clients, on the same fake and in the same job:
// artifacts ferry uploads are ordinary artifacts that @actions/artifact lists and downloads
// (the bytes, and the manifest naming each file's stored path, mode and SHA-256), and caches
// of actions/cache and of ferry never restore each other's, even under one key.
// The ferry binary is FERRY_BIN, else target/debug/ferry of this checkout.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cacheClients, loadClient, newJob, use, unique, makeTree, readTree, tempDir, captured, state
} from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const FERRY = process.env.FERRY_BIN || path.resolve(here, '../../../../target/debug/ferry');

/** Runs ferry as a job's step does, with the job's environment and no store given. */
function ferry(job, args, cwd) {
  const env = { PATH: process.env.PATH, HOME: tempDir('home'), LANG: 'C.UTF-8', ...job.env };
  delete env.FERRY_STORE;
  const r = spawnSync(FERRY, ['--json', ...args], { cwd, env, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) };
}

const sha256 = bytes => createHash('sha256').update(bytes).digest('hex');

describe('ferry beside @actions/artifact 6.2.1', () => {
  let artifacts;
  before(async () => {
    assert.ok(existsSync(FERRY), `no ferry at ${FERRY}: cargo build -p ferry, or set FERRY_BIN`);
    const mod = await import('@actions/artifact');
    artifacts = new mod.DefaultArtifactClient();
  });

  it('lists and downloads what ferry uploaded: the same bytes, named by the store', async () => {
    const job = use(await newJob());
    const project = unique('interop');
    const files = { 'reports/junit.xml': '<testsuite failures="0"/>', 'reports/bin/run.sh': '#!/bin/sh\necho ok\n' };
    const root = makeTree(files);
    chmodSync(path.join(root, 'reports/bin/run.sh'), 0o755);
    const up = ferry(job, ['--project', project, 'artifacts', 'upload', 'reports', '--destination', 'out'], root);
    assert.equal(up.code, 0, up.stderr);
    assert.equal(up.json().store, 'gha://');

    const { result: listed } = await captured(() => artifacts.listArtifacts());
    const mine = listed.artifacts.filter(a => a.name.includes(project));
    // Each file is two artifacts of the run: its bytes and ferry's manifest of it.
    assert.equal(mine.length, 4, JSON.stringify(listed.artifacts.map(a => a.name)));
    const manifests = mine.filter(a => a.name.endsWith('.json'));
    const data = mine.filter(a => !a.name.endsWith('.json'));
    assert.equal(manifests.length, 2);
    assert.equal(data.length, 2);
    for (const a of mine) {
      assert.ok(!/[/\\:"<>|*?]/.test(a.name), `${a.name} keeps to GitHub's name rules`);
      assert.ok(a.name.startsWith('ferry-v1 '), a.name);
    }

    // Every manifest, downloaded by GitHub's client, names a stored path, its mode and the
    // SHA-256 of an artifact whose bytes GitHub's client downloads unchanged.
    const stored = {};
    for (const m of manifests) {
      const dest = tempDir('manifest');
      const dl = await captured(() => artifacts.downloadArtifact(m.id, { path: dest }));
      assert.equal(dl.error, undefined, dl.out);
      const manifest = JSON.parse(readFileSync(path.join(dest, m.name), 'utf8'));
      stored[manifest.path] = manifest;
    }
    assert.deepEqual(Object.keys(stored).sort(), ['out/bin/run.sh', 'out/junit.xml']);
    assert.equal(stored['out/bin/run.sh'].mode, '0755');
    for (const [rel, manifest] of Object.entries(stored)) {
      const source = readFileSync(path.join(root, rel.replace(/^out\//, 'reports/')));
      assert.equal(manifest.data.sha256, sha256(source));
      const name = manifest.data.path.replace(/\//g, ' ');
      const artifact = data.find(a => a.name === name);
      assert.ok(artifact, `the data of ${rel} is the artifact ${name}`);
      assert.equal(artifact.digest, `sha256:${manifest.data.sha256}`, 'GitHub records the same SHA-256');
      const dest = tempDir('data');
      const dl = await captured(() => artifacts.downloadArtifact(artifact.id, { path: dest }));
      assert.equal(dl.error, undefined, dl.out);
      assert.deepEqual(readdirSync(dest), [name], 'an unzipped artifact downloads under its name');
      assert.deepEqual(readFileSync(path.join(dest, name)), source);
    }

    // And ferry downloads them back, modes and digests checked.
    const back = tempDir('ferry-download');
    const down = ferry(job, ['--project', project, 'artifacts', 'download', '--to', back], root);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(readTree(back), { 'out/junit.xml': files['reports/junit.xml'], 'out/bin/run.sh': files['reports/bin/run.sh'] });
  });
});

for (const client of cacheClients) {
  describe(`ferry beside ${client.name}`, () => {
    let cache;
    before(async () => {
      cache = await loadClient(client);
    });

    it("never restores the other's entries, under the same key", async () => {
      const job = use(await newJob());
      const key = unique('shared-key');

      // actions/cache saves `data` under the key; ferry restoring that key misses.
      const theirs = makeTree({ 'data/from-actions-cache.txt': 'theirs' });
      const cwd = process.cwd();
      process.chdir(theirs);
      let saved;
      try {
        saved = await captured(() => cache.saveCache(['data'], key));
      } finally {
        process.chdir(cwd);
      }
      assert.ok(saved.result > 0, saved.out);
      const miss = ferry(job, ['cache', 'restore', '--key', key, '--path', 'data'], tempDir('ferry-restore'));
      assert.equal(miss.code, 0, miss.stderr);
      assert.equal(miss.json().hit, 'miss');

      // ferry saves under another key of the same prefix; actions/cache never finds it.
      const ours = makeTree({ 'data/from-ferry.txt': 'ours' });
      const ferryKey = `${key}-ferry`;
      const save = ferry(job, ['cache', 'save', '--key', ferryKey, '--path', 'data'], ours);
      assert.equal(save.code, 0, save.stderr);
      assert.equal(save.json().saved, true);
      const restoreRoot = makeTree({});
      process.chdir(restoreRoot);
      let restored;
      try {
        restored = await captured(() => cache.restoreCache(['data'], ferryKey, [`${key}-`]));
      } finally {
        process.chdir(cwd);
      }
      assert.equal(restored.result, undefined, restored.out);
      assert.deepEqual(readTree(restoreRoot), {});

      // Both entries sit in the same service, each under its own version.
      const entries = (await state()).caches.filter(c => c.key === key || c.key.includes(ferryKey));
      assert.ok(entries.length >= 2, JSON.stringify(entries));
      assert.equal(new Set(entries.map(e => e.version)).size, 2, JSON.stringify(entries));
    });
  });
}
