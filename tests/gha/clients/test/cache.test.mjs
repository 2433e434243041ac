// @actions/cache (the client actions/cache uses) saves and restores through the fake: exact
// hits, prefix hits through the key and restore keys, misses, the 409 on a duplicate or
// concurrent save, and branch scoping.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import {
  cacheClients, loadClient, newJob, use, unique, makeTree, readTree, captured, state, reset,
  cacheVersion, twirp, CACHE_SERVICE, admin, configure
} from './helpers.mjs';

before(reset);

for (const client of cacheClients) {
  describe(client.name, () => {
    let cache;
    before(async () => {
      cache = await loadClient(client);
    });

    // Saves `files` under key from a folder, the way a job does: relative paths from its cwd.
    async function save(key, files, { paths = ['data'] } = {}) {
      const root = makeTree(Object.fromEntries(Object.entries(files).map(([k, v]) => [`data/${k}`, v])));
      const cwd = process.cwd();
      process.chdir(root);
      try {
        return await captured(() => cache.saveCache(paths, key));
      } finally {
        process.chdir(cwd);
      }
    }

    async function restore(key, restoreKeys = [], { paths = ['data'], lookupOnly = false } = {}) {
      const root = makeTree({});
      const cwd = process.cwd();
      process.chdir(root);
      try {
        const r = await captured(() => cache.restoreCache(paths, key, restoreKeys, { lookupOnly }));
        return { ...r, files: r.result ? readTree(root) : {} };
      } finally {
        process.chdir(cwd);
      }
    }

    it('saves an entry and restores it on an exact hit', async () => {
      use(await newJob());
      const key = unique('exact');
      const saved = await save(key, { 'a.txt': 'alpha', 'sub/b.txt': 'beta' });
      assert.equal(saved.error, undefined);
      assert.ok(saved.result > 0, `saveCache returned ${saved.result}: ${saved.out}`);
      const restored = await restore(key);
      assert.equal(restored.result, key, restored.out);
      assert.deepEqual(restored.files, { 'data/a.txt': 'alpha', 'data/sub/b.txt': 'beta' });
      const entry = (await state()).caches.find(c => c.key === key);
      assert.equal(entry.id, saved.result, 'saveCache returns the entry_id of FinalizeCacheEntryUpload');
      assert.ok(
        ['zstd-without-long', 'zstd', 'gzip'].some(m => cacheVersion(['data'], m) === entry.version),
        `version ${entry.version} is sha256 of paths|compression|1.0`
      );
      assert.equal(entry.size_in_bytes > 0, true);
    });

    it('restores with the Azure SDK, in ranges, when the URLs name an Azure host', async () => {
      // Off *.blob.core.windows.net the client falls back to one plain GET; this is the path
      // it takes on GitHub: Get Blob Properties, then ranged reads.
      await configure({ azure_blob_host: true });
      const proxy = new URL(process.env.ACTIONS_RESULTS_URL).origin;
      const saved = { ...process.env };
      Object.assign(process.env, { HTTP_PROXY: proxy, http_proxy: proxy, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' });
      try {
        use(await newJob());
        const key = unique('azure');
        const big = randomBytes(6 * 1024 * 1024).toString('base64');
        const s = await save(key, { 'big.txt': big });
        assert.ok(s.result > 0, s.out);
        await admin('DELETE', '/requests');
        const r = await restore(key);
        assert.equal(r.result, key, r.out);
        assert.equal(r.files['data/big.txt'], big);
        const blob = (await admin('GET', '/requests')).filter(q => q.kind === 'blob');
        assert.equal(blob[0].method, 'HEAD', 'properties first');
        const ranged = blob.filter(q => q.method === 'GET' && /^bytes=/.test(q.detail || ''));
        assert.ok(ranged.length >= 2, `ranged reads: ${JSON.stringify(blob)}`);
        assert.ok(ranged.every(q => q.status === 206), JSON.stringify(ranged));
      } finally {
        for (const k of ['HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']) {
          if (k in saved) process.env[k] = saved[k];
          else delete process.env[k];
        }
        await configure({ azure_blob_host: false });
      }
    });

    it('misses a key nobody saved, and an entry saved with other paths (another version)', async () => {
      use(await newJob());
      const key = unique('miss');
      assert.equal((await restore(key)).result, undefined);
      await save(key, { 'a.txt': 'x' });
      const other = await restore(key, [], { paths: ['data', 'more'] });
      assert.equal(other.result, undefined, 'the version covers the paths');
    });

    it('restores the newest entry whose key starts with a restore key', async () => {
      use(await newJob());
      const prefix = unique('prefix');
      await save(`${prefix}-1`, { 'v.txt': 'one' });
      await save(`${prefix}-2`, { 'v.txt': 'two' });
      const restored = await restore(`${prefix}-no-such`, ['nothing-', `${prefix}-`]);
      assert.equal(restored.result, `${prefix}-2`, restored.out);
      assert.deepEqual(restored.files, { 'data/v.txt': 'two' });
      assert.match(restored.out, new RegExp(`Cache hit for restore-key: ${prefix}-2|${prefix}-2`));
    });

    it('matches the primary key as a prefix too, and an exact key before a newer prefix match', async () => {
      use(await newJob());
      const key = unique('primary');
      await save(`${key}-older`, { 'v.txt': 'older' });
      await save(key, { 'v.txt': 'exact' });
      await save(`${key}-newer`, { 'v.txt': 'newer' });
      assert.equal((await restore(key)).result, key);
      assert.equal((await restore(`${key}-`)).result, `${key}-newer`);
    });

    it('looks up without downloading when asked to', async () => {
      use(await newJob());
      const key = unique('lookup');
      await save(key, { 'a.txt': 'a' });
      const looked = await restore(key, [], { lookupOnly: true });
      assert.equal(looked.result, key);
      assert.deepEqual(looked.files, {});
    });

    it('refuses a second save of the same key and version with 409 already_exists', async () => {
      use(await newJob());
      const key = unique('dup');
      assert.ok((await save(key, { 'a.txt': 'first' })).result > 0);
      const second = await save(key, { 'a.txt': 'second' });
      assert.equal(second.result, -1);
      assert.equal(second.error, undefined, 'a refused save is not an error for the job');
      assert.match(second.out, /Unable to reserve cache with key .*another job may be creating this cache/);
      assert.deepEqual((await restore(key)).files, { 'data/a.txt': 'first' }, 'first write wins');
    });

    it('lets exactly one of two concurrent saves of a key win', async () => {
      use(await newJob());
      const key = unique('race');
      // Both from the same folder: the version covers the paths, so they must be equal.
      const root = makeTree({ 'data/a.txt': 'same' });
      const results = await captured(() =>
        Promise.all([1, 2].map(() => cache.saveCache([`${root}/data`], key))));
      const ids = results.result;
      assert.equal(ids.filter(id => id > 0).length, 1, `ids ${ids}: ${results.out}`);
      assert.equal(ids.filter(id => id === -1).length, 1);
      rmSync(root, { recursive: true });
    });

    it('refuses a save while another job is still uploading the key (409)', async () => {
      const job = use(await newJob());
      const key = unique('uploading');
      const version = cacheVersion(['data'], 'zstd-without-long');
      const reserved = await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key, version });
      assert.equal(reserved.body.ok, true);
      const gzipVersion = cacheVersion(['data'], 'gzip');
      await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key, version: gzipVersion });
      const second = await save(key, { 'a.txt': 'x' });
      assert.equal(second.result, -1);
      assert.match(second.out, /another job may be creating this cache/);
    });

    it('scopes entries to the branch: a job reads its own branch, then the default branch', async () => {
      const run = { run_id: undefined };
      const feature = await newJob({ ...run, ref: 'refs/heads/feature-a' });
      const other = await newJob({ ref: 'refs/heads/feature-b' });
      const main = await newJob({ ref: 'refs/heads/main' });
      const key = unique('scoped');

      use(feature);
      assert.ok((await save(`${key}-feature`, { 'w.txt': 'feature' })).result > 0);
      use(main);
      assert.equal((await restore(`${key}-feature`)).result, undefined, 'main does not see a branch entry');
      use(other);
      assert.equal((await restore(`${key}-feature`)).result, undefined, 'nor does another branch');

      use(main);
      assert.ok((await save(`${key}-main`, { 'w.txt': 'main' })).result > 0);
      use(feature);
      assert.equal((await restore(`${key}-main`)).result, `${key}-main`, 'a branch reads the default branch');
      // Own branch first: the feature entry wins over main's even though main's is newer.
      assert.equal((await restore(`${key}-`)).result, `${key}-feature`);

      // The same key saved on two branches is two entries, not a conflict.
      use(feature);
      assert.ok((await save(`${key}-main`, { 'w.txt': 'feature copy' })).result > 0);
      assert.deepEqual((await restore(`${key}-main`)).files, { 'data/w.txt': 'feature copy' });
      const refs = (await state()).caches.filter(c => c.key === `${key}-main`).map(c => c.ref).sort();
      assert.deepEqual(refs, ['refs/heads/feature-a', 'refs/heads/main']);
    });

    it('reads a pull request base branch after its own ref', async () => {
      const base = await newJob({ ref: 'refs/heads/release' });
      const pr = await newJob({ ref: 'refs/pull/7/merge', base_ref: 'release' });
      const key = unique('pr');
      use(base);
      assert.ok((await save(key, { 'p.txt': 'release' })).result > 0);
      use(pr);
      assert.equal((await restore(key)).result, key);
    });
  });
}
