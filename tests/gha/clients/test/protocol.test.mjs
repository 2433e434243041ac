// The wire details tests/gha/PROTOCOL.md promises and ferry's own client will rely on, made
// with plain HTTP as ferry will make them: Twirp JSON shapes and errors, and the signed blob
// URLs (Put Block + Put Block List, ranged reads, permissions, signatures, expiry) as Azurite
// enforces them.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  newJob, unique, reset, twirp, admin, configure, putBlob, putBlocks, rawCacheSave, rawArtifact, addFault,
  CACHE_SERVICE, ARTIFACT_SERVICE
} from './helpers.mjs';

before(reset);

describe('CacheService', () => {
  it('uploads a stream of unknown length as blocks and reads it back by ranges', async () => {
    const job = await newJob();
    const key = unique('blocks');
    const created = await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key, version: 'ferry-v1' });
    assert.deepEqual(Object.keys(created.body).sort(), ['message', 'ok', 'signed_upload_url']);
    const url = created.body.signed_upload_url;
    assert.equal(new URL(url).searchParams.get('sp'), 'cw', 'create and write, no read');
    const chunks = [Buffer.alloc(300000, 'a'), Buffer.alloc(200000, 'b'), Buffer.from('tail')];
    const listed = await putBlocks(url, chunks);
    assert.equal(listed.status, 201, listed.text);
    const size = chunks.reduce((n, c) => n + c.length, 0);
    const fin = await twirp(job, CACHE_SERVICE, 'FinalizeCacheEntryUpload', { key, version: 'ferry-v1', size_bytes: String(size) });
    assert.deepEqual(fin.body, { ok: true, entry_id: fin.body.entry_id, message: '' });
    assert.match(fin.body.entry_id, /^\d+$/, 'int64 as a decimal string');

    const got = await twirp(job, CACHE_SERVICE, 'GetCacheEntryDownloadURL', { key, restore_keys: [], version: 'ferry-v1' });
    assert.equal(got.body.ok, true);
    assert.equal(got.body.matched_key, key);
    const dl = got.body.signed_download_url;
    assert.equal(new URL(dl).searchParams.get('sp'), 'r');
    const range = await fetch(dl, { headers: { Range: `bytes=${size - 10}-${size - 1}` } });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get('content-range'), `bytes ${size - 10}-${size - 1}/${size}`);
    assert.equal(await range.text(), 'bbbbbbtail');
    const whole = await fetch(dl);
    assert.equal(whole.status, 200);
    assert.equal(Number(whole.headers.get('content-length')), size);
    await whole.arrayBuffer();
  });

  it('keeps the signed URLs to what they were made for', async () => {
    const job = await newJob();
    const key = unique('perm');
    const created = await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key, version: 'v' });
    const up = created.body.signed_upload_url;
    assert.equal((await putBlob(up, Buffer.from('data'))).status, 201);
    assert.equal((await fetch(up)).status, 403, 'an upload URL cannot read');
    const tampered = up.replace(/sig=[^&]+/, 'sig=AAAA');
    assert.equal((await putBlob(tampered, Buffer.from('evil'))).status, 403, 'a forged signature is refused');
    const elsewhere = up.replace(/caches\/[^?]+/, 'caches/another-blob');
    assert.equal((await putBlob(elsewhere, Buffer.from('evil'))).status, 403, 'the signature covers the blob name');
    await twirp(job, CACHE_SERVICE, 'FinalizeCacheEntryUpload', { key, version: 'v', size_bytes: '4' });
    const got = await twirp(job, CACHE_SERVICE, 'GetCacheEntryDownloadURL', { key, version: 'v' });
    assert.equal((await putBlob(got.body.signed_download_url, Buffer.from('x'))).status, 403, 'a download URL cannot write');
    await addFault({ kind: 'expired_url', method: 'GetCacheEntryDownloadURL', run_id: job.run_id });
    const stale = await twirp(job, CACHE_SERVICE, 'GetCacheEntryDownloadURL', { key, version: 'v' });
    assert.equal((await fetch(stale.body.signed_download_url)).status, 403, 'an expired URL is refused');
  });

  it('answers a miss with ok:false and empty fields', async () => {
    const job = await newJob();
    const miss = await twirp(job, CACHE_SERVICE, 'GetCacheEntryDownloadURL', { key: unique('none'), restore_keys: ['zz-'], version: 'v' });
    assert.equal(miss.status, 200);
    assert.deepEqual(miss.body, { ok: false, signed_download_url: '', matched_key: '' });
  });

  it('refuses to finalize what was not uploaded, or with the wrong size', async () => {
    const job = await newJob();
    const key = unique('fin');
    const unknown = await twirp(job, CACHE_SERVICE, 'FinalizeCacheEntryUpload', { key, version: 'v', size_bytes: '1' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'not_found');
    const created = await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key, version: 'v' });
    const early = await twirp(job, CACHE_SERVICE, 'FinalizeCacheEntryUpload', { key, version: 'v', size_bytes: '1' });
    assert.deepEqual([early.status, early.body.ok], [200, false]);
    await putBlob(created.body.signed_upload_url, Buffer.from('12345'));
    const wrong = await twirp(job, CACHE_SERVICE, 'FinalizeCacheEntryUpload', { key, version: 'v', size_bytes: '4' });
    assert.equal(wrong.body.ok, false);
    assert.match(wrong.body.message, /does not match/);
    const right = await twirp(job, CACHE_SERVICE, 'FinalizeCacheEntryUpload', { key, version: 'v', size_bytes: 5 });
    assert.equal(right.body.ok, true, 'int64 also as a JSON number');
    const again = await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key, version: 'v' });
    assert.deepEqual([again.status, again.body.code], [409, 'already_exists']);
  });

  it('reads protobuf JSON as Twirp does: camelCase names too, unknown fields ignored', async () => {
    const job = await newJob();
    const key = unique('camel');
    await rawCacheSave(job, key, 'v', Buffer.from('abc'));
    const got = await twirp(job, CACHE_SERVICE, 'GetCacheEntryDownloadURL', {
      key: 'no-such', restoreKeys: [key], version: 'v', someFutureField: 1
    });
    assert.equal(got.body.matched_key, key);
  });

  it('answers errors as Twirp JSON {code, msg} with the Twirp status', async () => {
    const job = await newJob();
    const url = new URL(`/twirp/${CACHE_SERVICE}/CreateCacheEntry`, job.env.ACTIONS_RESULTS_URL);
    const call = async (init) => {
      const res = await fetch(url, { method: 'POST', ...init });
      return { status: res.status, body: await res.json() };
    };
    const json = { 'Content-Type': 'application/json' };
    assert.deepEqual((await call({ headers: json, body: '{}' })).body.code, 'unauthenticated');
    const forged = job.token.slice(0, -4) + 'AAAA';
    assert.equal((await call({ headers: { ...json, Authorization: `Bearer ${forged}` }, body: '{}' })).status, 401);
    const auth = { ...json, Authorization: `Bearer ${job.token}` };
    assert.deepEqual(await call({ headers: auth, body: 'not json' }),
      { status: 400, body: { code: 'malformed', msg: 'the request body is not valid JSON' } });
    assert.equal((await call({ headers: auth, body: JSON.stringify({ key: '', version: 'v' }) })).body.code, 'invalid_argument');
    const proto = await call({ headers: { ...auth, 'Content-Type': 'application/protobuf' }, body: '' });
    assert.deepEqual([proto.status, proto.body.code], [404, 'bad_route']);
    const get = await fetch(url, { headers: auth });
    assert.deepEqual([get.status, (await get.json()).code], [404, 'bad_route']);
    await addFault({ kind: 'rate_limited', method: 'CreateCacheEntry', run_id: job.run_id, retry_after: 5 });
    const limited = await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key: 'k', version: 'v' });
    assert.deepEqual([limited.status, limited.body.code, limited.headers.get('retry-after')], [429, 'resource_exhausted', '5']);
  });

  it('answers a read-only token ok:false and a token without read 403', async () => {
    const ro = await newJob({ cache_mode: 'read' });
    const denied = await twirp(ro, CACHE_SERVICE, 'CreateCacheEntry', { key: 'k', version: 'v' });
    assert.deepEqual([denied.status, denied.body.ok], [200, false]);
    assert.match(denied.body.message, /^cache write denied: /);
    const none = await newJob({ cache_mode: 'none' });
    const blind = await twirp(none, CACHE_SERVICE, 'GetCacheEntryDownloadURL', { key: 'k', version: 'v' });
    assert.deepEqual([blind.status, blind.body.code], [403, 'permission_denied']);
    assert.match(blind.body.msg, /^cache read denied: /);
  });
});

describe('ArtifactService', () => {
  it('lists with int64 as strings, RFC 3339 times and a null digest when none was given', async () => {
    const job = await newJob();
    const name = unique('shape');
    const id = await rawArtifact(job, name, Buffer.from('zip bytes'));
    const ids = { workflow_run_backend_id: job.run_backend_id, workflow_job_run_backend_id: job.job_backend_id };
    const list = await twirp(job, ARTIFACT_SERVICE, 'ListArtifacts', { ...ids, name_filter: name });
    assert.equal(list.body.artifacts.length, 1);
    const a = list.body.artifacts[0];
    assert.deepEqual({ ...a, created_at: 'T' }, {
      ...ids, database_id: String(id), name, size: '9', created_at: 'T', digest: null
    });
    assert.match(a.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const byId = await twirp(job, ARTIFACT_SERVICE, 'ListArtifacts', { ...ids, id_filter: String(id) });
    assert.equal(byId.body.artifacts[0].name, name);
    const url = await twirp(job, ARTIFACT_SERVICE, 'GetSignedArtifactURL', { ...ids, name });
    assert.deepEqual(Object.keys(url.body), ['signed_url']);
    const blob = await fetch(url.body.signed_url);
    assert.equal(await blob.text(), 'zip bytes');
    assert.equal(blob.headers.get('content-type'), 'application/zip');
    const del = await twirp(job, ARTIFACT_SERVICE, 'DeleteArtifact', { ...ids, name });
    assert.deepEqual(del.body, { ok: true, artifact_id: String(id) });
    const gone = await twirp(job, ARTIFACT_SERVICE, 'GetSignedArtifactURL', { ...ids, name });
    assert.deepEqual([gone.status, gone.body.code], [404, 'not_found']);
  });

  it("refuses another run's ids, bad names, and finalizing before the upload", async () => {
    const job = await newJob();
    const other = await newJob();
    const mine = { workflow_run_backend_id: job.run_backend_id, workflow_job_run_backend_id: job.job_backend_id };
    const theirs = { workflow_run_backend_id: other.run_backend_id, workflow_job_run_backend_id: other.job_backend_id };
    const cross = await twirp(job, ARTIFACT_SERVICE, 'CreateArtifact', { ...theirs, name: 'x', version: 7 });
    assert.deepEqual([cross.status, cross.body.code], [403, 'permission_denied']);
    const long = await twirp(job, ARTIFACT_SERVICE, 'CreateArtifact', { ...mine, name: 'x'.repeat(257), version: 7 });
    assert.deepEqual([long.status, long.body.code], [400, 'invalid_argument']);
    const name = unique('early');
    await twirp(job, ARTIFACT_SERVICE, 'CreateArtifact', { ...mine, name, version: 7 });
    const early = await twirp(job, ARTIFACT_SERVICE, 'FinalizeArtifact', { ...mine, name, size: '1' });
    assert.deepEqual([early.status, early.body.code], [412, 'failed_precondition']);
  });

  it('limits the artifacts of a job (GitHub: 500)', async () => {
    assert.equal((await admin('GET', '/config')).artifacts_per_job, 500);
    await configure({ artifacts_per_job: 3 });
    const job = await newJob();
    const ids = { workflow_run_backend_id: job.run_backend_id, workflow_job_run_backend_id: job.job_backend_id };
    for (let i = 0; i < 3; i++) {
      const r = await twirp(job, ARTIFACT_SERVICE, 'CreateArtifact', { ...ids, name: `n${i}`, version: 7 });
      assert.equal(r.status, 200);
    }
    const over = await twirp(job, ARTIFACT_SERVICE, 'CreateArtifact', { ...ids, name: 'n3', version: 7 });
    assert.deepEqual([over.status, over.body.code], [400, 'invalid_argument']);
    await reset();
  });

  it('clamps retention to the repository maximum and refuses a past expiry', async () => {
    const job = await newJob();
    const ids = { workflow_run_backend_id: job.run_backend_id, workflow_job_run_backend_id: job.job_backend_id };
    const past = await twirp(job, ARTIFACT_SERVICE, 'CreateArtifact', {
      ...ids, name: unique('past'), version: 7, expires_at: '2001-01-01T00:00:00Z'
    });
    assert.deepEqual([past.status, past.body.code], [400, 'invalid_argument']);
  });
});
