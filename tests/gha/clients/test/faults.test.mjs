// Each failure GitHub's services can answer, injected into the fake, and what GitHub's own
// clients make of it: a read-only token or cache mode, a token without read, 429 with
// Retry-After, an expired token, evicted entries, lookups that are not yet consistent,
// expired signed URLs and reservations left by a failed upload.
import { describe, it, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  cacheClients, artifactClients, loadClient, newJob, use, unique, makeTree, readTree, captured, reset,
  addFault, advanceClock, configure, callsOf, admin, rest, REPO
} from './helpers.mjs';

const WRITE_DENIED = 'cache write denied: token has no writable scopes';
const READ_DENIED = 'cache read denied: token has no readable scopes';

for (const client of cacheClients) {
  describe(client.name, () => {
    let cache;
    before(async () => {
      cache = await loadClient(client);
    });
    beforeEach(reset);

    async function save(key, content = 'x') {
      const root = makeTree({ 'data/f.txt': content });
      const cwd = process.cwd();
      process.chdir(root);
      try {
        return await captured(() => cache.saveCache(['data'], key));
      } finally {
        process.chdir(cwd);
      }
    }

    async function restore(key, restoreKeys = []) {
      const root = makeTree({});
      const cwd = process.cwd();
      process.chdir(root);
      try {
        const r = await captured(() => cache.restoreCache(['data'], key, restoreKeys));
        return { ...r, files: r.result ? readTree(root) : {} };
      } finally {
        process.chdir(cwd);
      }
    }

    const calls = async (job, method) => (await callsOf(job.run_id)).filter(c => c.method === method).map(c => c.status);

    it('a read-only token: CreateCacheEntry answers ok:false "cache write denied:", the save is skipped', async () => {
      const job = use(await newJob({ cache_mode: 'read' }), { cacheMode: null });
      const r = await save(unique('ro'));
      assert.equal(r.result, -1);
      assert.equal(r.error, undefined);
      assert.deepEqual(await calls(job, 'CreateCacheEntry'), [200]);
      if (client.v >= 6) {
        // One warning, naming the policy, not the inner "Cache reservation failed" as well.
        assert.equal(r.warnings.filter(w => w.includes('denied')).length, 1, r.out);
        assert.match(r.warnings.join('\n'), new RegExp(`Failed to save: Unable to reserve cache with key .*\\. More details: ${WRITE_DENIED}`));
      } else {
        assert.match(r.warnings.join('\n'), new RegExp(`Cache reservation failed: ${WRITE_DENIED}`));
        assert.match(r.out, /Failed to save: Unable to reserve cache with key .*, another job may be creating this cache/);
      }
    });

    it('ACTIONS_CACHE_MODE=read: the client does not even ask (v5+), the service refuses anyway', async () => {
      const job = use(await newJob({ cache_mode: 'read' }));
      assert.equal(process.env.ACTIONS_CACHE_MODE, 'read');
      const r = await save(unique('mode'));
      assert.equal(r.result, -1);
      if (client.v >= 6) {
        assert.match(r.out, /Cache save skipped: the effective cache-mode 'read' does not permit writes/);
        assert.deepEqual(await calls(job, 'CreateCacheEntry'), []);
      } else {
        assert.deepEqual(await calls(job, 'CreateCacheEntry'), [200], 'v4 ignores the mode; the token decides');
      }
    });

    it('a token without read: GetCacheEntryDownloadURL answers 403 "cache read denied:", a miss with a warning', async () => {
      const writer = use(await newJob());
      const key = unique('noread');
      assert.ok((await save(key)).result > 0);
      const job = use(await newJob({ cache_mode: 'write-only' }), { cacheMode: null });
      const r = await restore(key);
      assert.equal(r.result, undefined);
      assert.equal(r.error, undefined);
      assert.match(r.warnings.join('\n'),
        new RegExp(`Failed to restore: Failed to GetCacheEntryDownloadURL: Received non-retryable error: Failed request: \\(403\\) Forbidden: ${READ_DENIED}`));
      assert.deepEqual(await calls(job, 'GetCacheEntryDownloadURL'), [403]);
      assert.ok(writer);
      if (client.v >= 6) {
        use(job);
        assert.equal(process.env.ACTIONS_CACHE_MODE, 'write-only');
        const skipped = await restore(key);
        assert.match(skipped.out, /Cache restore skipped: the effective cache-mode 'write-only' does not permit reads/);
        assert.deepEqual(await calls(job, 'GetCacheEntryDownloadURL'), [403], 'no second call');
      }
    });

    it('429 with Retry-After: v5+ gives up at once (save skipped, restore a miss); v4 retries after 3 s', async () => {
      const job = use(await newJob());
      const key = unique('limited');
      await addFault({ kind: 'rate_limited', method: 'CreateCacheEntry', run_id: job.run_id, retry_after: 7 });
      const saved = await save(key);
      if (client.v >= 6) {
        assert.equal(saved.result, -1);
        assert.deepEqual(await calls(job, 'CreateCacheEntry'), [429]);
        assert.match(saved.out, /Failed to save: Unable to reserve cache with key .*, another job may be creating this cache/);
        assert.ok(saved.warnings.includes("You've hit a rate limit, your rate limit will reset in 7 seconds"), saved.out);
      } else {
        // v4 treats 429 like a 5xx: its own backoff (3 s), the Retry-After header unread.
        assert.ok(saved.result > 0, saved.out);
        assert.deepEqual(await calls(job, 'CreateCacheEntry'), [429, 200]);
      }

      await addFault({ kind: 'rate_limited', method: 'GetCacheEntryDownloadURL', run_id: job.run_id, retry_after: 9 });
      const restored = await restore(key);
      if (client.v >= 6) {
        assert.equal(restored.result, undefined);
        assert.deepEqual(await calls(job, 'GetCacheEntryDownloadURL'), [429]);
        assert.ok(restored.warnings.includes(
          'Failed to restore: Failed to GetCacheEntryDownloadURL: Rate limited: Failed request: (429) Too Many Requests: rate limit exceeded'),
        restored.warnings.join('\n'));
      } else {
        assert.equal(restored.result, key);
        assert.deepEqual(await calls(job, 'GetCacheEntryDownloadURL'), [429, 200]);
      }
    });

    it('an expired runtime token (about 6 hours): every call answers 401', async () => {
      const job = use(await newJob());
      const key = unique('expired');
      assert.ok((await save(key)).result > 0);
      await advanceClock(6 * 3600 + 1);
      const r = await restore(key);
      assert.equal(r.result, undefined);
      assert.match(r.warnings.join('\n'),
        /Failed to restore: Failed to GetCacheEntryDownloadURL: Received non-retryable error: Failed request: \(401\) Unauthorized: runtime token has expired/);
      const s = await save(unique('expired'));
      assert.equal(s.result, -1);
      assert.deepEqual(await calls(job, 'CreateCacheEntry'), [200, 401]);
      // A fresh token works again; the fault form expires one on demand without moving the clock.
      const fresh = use(await newJob());
      assert.equal((await restore(key)).result, key);
      await addFault({ kind: 'token_expired', method: '*', run_id: fresh.run_id });
      assert.equal((await restore(key)).result, undefined);
      assert.deepEqual(await calls(fresh, 'GetCacheEntryDownloadURL'), [200, 401]);
    });

    it('an evicted entry is a miss; one whose blob vanished after the lookup fails the download', async () => {
      use(await newJob());
      const key = unique('evicted');
      assert.ok((await save(key)).result > 0);
      await admin('POST', '/caches/evict', { key });
      const miss = await restore(key);
      assert.equal(miss.result, undefined);
      assert.deepEqual(miss.warnings, []);

      const key2 = unique('blobgone');
      assert.ok((await save(key2)).result > 0);
      await admin('POST', '/caches/evict', { key: key2, blob_only: true });
      const broken = await restore(key2);
      assert.equal(broken.result, undefined);
      // Off *.blob.core.windows.net the clients fetch with a plain GET that keeps any non-5xx
      // answer: the 404 body is written as the archive and tar is what fails.
      assert.match(broken.warnings.join('\n'), /Failed to restore: /);
    });

    it('entries unused for 7 days are evicted, and a restore counts as a use', async () => {
      use(await newJob());
      const used = unique('used');
      const idle = unique('idle');
      assert.ok((await save(used)).result > 0);
      assert.ok((await save(idle)).result > 0);
      await advanceClock(4 * 86400);
      use(await newJob());
      assert.equal((await restore(used)).result, used);
      await advanceClock(4 * 86400);
      use(await newJob());
      assert.equal((await restore(used)).result, used);
      assert.equal((await restore(idle)).result, undefined);
      const listed = await rest('GET', `/repos/${REPO}/actions/caches?key=${idle}`);
      assert.equal(listed.body.total_count, 0);
    });

    it('over the repository limit, the least recently used entries go first', async () => {
      use(await newJob());
      const a = unique('lru-a');
      const b = unique('lru-b');
      const sa = await save(a, 'a'.repeat(1000));
      assert.ok(sa.result > 0);
      const size = (await rest('GET', `/repos/${REPO}/actions/caches?key=${a}`)).body.actions_caches[0].size_in_bytes;
      // Room for two entries, not three (archives of equal content differ by a few bytes).
      await configure({ cache_limit_bytes: Math.floor(size * 2.5) });
      await advanceClock(1);
      assert.ok((await save(b, 'a'.repeat(1000))).result > 0);
      await advanceClock(1);
      assert.equal((await restore(a)).result, a, 'touch a: b is now the least recently used');
      await advanceClock(1);
      assert.ok((await save(unique('lru-c'), 'a'.repeat(1000))).result > 0);
      assert.equal((await restore(b)).result, undefined);
      assert.equal((await restore(a)).result, a);
    });

    it('a just-finalized entry can take a while to be found', async () => {
      use(await newJob());
      const key = unique('eventual');
      await configure({ consistency_delay_seconds: 30 });
      assert.ok((await save(key)).result > 0);
      const early = await restore(key);
      assert.equal(early.result, undefined);
      assert.deepEqual(early.warnings, []);
      await advanceClock(31);
      assert.equal((await restore(key)).result, key);

      const job = use(await newJob());
      await addFault({ kind: 'stale_lookup', method: 'GetCacheEntryDownloadURL', run_id: job.run_id, times: 1, window_seconds: 10 });
      assert.equal((await restore(key)).result, key, 'an entry older than the window stays visible');
      await configure({ consistency_delay_seconds: 0 });
      const key2 = unique('eventual');
      assert.ok((await save(key2)).result > 0);
      await addFault({ kind: 'stale_lookup', method: 'GetCacheEntryDownloadURL', run_id: job.run_id, times: 1 });
      assert.equal((await restore(key2)).result, undefined);
      assert.equal((await restore(key2)).result, key2);
    });

    it('an expired signed URL is refused by the blob service', async () => {
      const job = use(await newJob());
      const key = unique('sas');
      assert.ok((await save(key)).result > 0);
      await addFault({ kind: 'expired_url', method: 'GetCacheEntryDownloadURL', run_id: job.run_id });
      const r = await restore(key);
      assert.equal(r.result, undefined);
      assert.match(r.warnings.join('\n'), /Failed to restore: /);
      assert.equal((await restore(key)).result, key, 'the next URL is good');
    });

    it('a failed upload leaves the key reserved (409) until the reservation lapses after 24 hours', async () => {
      const job = use(await newJob());
      const key = unique('stuck');
      await addFault({ kind: 'expired_url', method: 'CreateCacheEntry', run_id: job.run_id });
      const failed = await save(key);
      assert.equal(failed.result, -1);
      assert.match(failed.warnings.join('\n'), /Failed to save: /);
      assert.deepEqual(await calls(job, 'FinalizeCacheEntryUpload'), [], 'never finalized');
      const blocked = await save(key);
      assert.equal(blocked.result, -1);
      assert.match(blocked.out, /another job may be creating this cache/);
      await advanceClock(24 * 3600 + 1);
      use(await newJob());
      assert.ok((await save(key)).result > 0);
    });

    if (client.v >= 6) {
      it('a 500 is retried after a pause', async () => {
        const job = use(await newJob());
        const key = unique('retry');
        assert.ok((await save(key)).result > 0);
        await addFault({ kind: 'internal', method: 'GetCacheEntryDownloadURL', run_id: job.run_id });
        const r = await restore(key);
        assert.equal(r.result, key);
        assert.deepEqual(await calls(job, 'GetCacheEntryDownloadURL'), [500, 200]);
      });
    }
  });
}

for (const client of artifactClients) {
  describe(client.name, () => {
    let artifacts;
    before(async () => {
      const mod = await loadClient(client);
      artifacts = new mod.DefaultArtifactClient();
    });
    beforeEach(reset);

    it('an expired runtime token fails the upload with 401', async () => {
      const job = use(await newJob());
      await addFault({ kind: 'token_expired', method: 'CreateArtifact', run_id: job.run_id });
      const root = makeTree({ 'a.txt': 'a' });
      const r = await captured(() => artifacts.uploadArtifact(unique('late'), [path.join(root, 'a.txt')], root));
      assert.match(String(r.error),
        /Failed to CreateArtifact: Received non-retryable error: Failed request: \(401\) Unauthorized: runtime token has expired/);
    });
  });
}
