// Every REST endpoint ferry uses, called as ferry will call it, each answer validated against
// the schema GitHub's OpenAPI description gives for that operation and status.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  newJob, unique, reset, rest, rawCacheSave, rawArtifact, addFault, REPO, GITHUB_TOKEN
} from './helpers.mjs';
import { problems } from './openapi.mjs';

const CACHES = '/repos/{owner}/{repo}/actions/caches';
const CACHE_ID = '/repos/{owner}/{repo}/actions/caches/{cache_id}';
const RUN_ARTIFACTS = '/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts';
const ARTIFACTS = '/repos/{owner}/{repo}/actions/artifacts';
const ARTIFACT = '/repos/{owner}/{repo}/actions/artifacts/{artifact_id}';
const DOWNLOAD = '/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}';

/** A REST call whose answer must conform to the operation's description. */
async function call(template, verb, route) {
  const res = await rest(verb, route);
  assert.deepEqual(problems(template, verb, res), [], `${verb} ${route} -> ${res.status} ${JSON.stringify(res.body)}`);
  return res;
}

function links(res) {
  const out = {};
  for (const part of (res.headers.get('link') || '').split(',').filter(Boolean)) {
    const m = part.match(/<([^>]+)>;\s*rel="([^"]+)"/);
    out[m[2]] = new URL(m[1]);
  }
  return out;
}

before(reset);

describe('caches', () => {
  const prefix = unique('rest');
  let main;
  let feature;
  const ids = {};

  before(async () => {
    main = await newJob({ ref: 'refs/heads/main' });
    feature = await newJob({ ref: 'refs/heads/topic' });
    ids.a = await rawCacheSave(main, `${prefix}-a`, 'v1', Buffer.from('a'));
    ids.b = await rawCacheSave(main, `${prefix}-b`, 'v1', Buffer.from('bbbb'));
    ids.c = await rawCacheSave(feature, `${prefix}-b`, 'v1', Buffer.from('cc'));
    ids.d = await rawCacheSave(main, `${prefix}-b`, 'v2', Buffer.from('ddd'));
  });

  it('lists caches by key prefix and ref, newest access first', async () => {
    const all = await call(CACHES, 'GET', `/repos/${REPO}/actions/caches?key=${prefix}`);
    assert.equal(all.body.total_count, 4);
    assert.deepEqual(all.body.actions_caches.map(c => c.id), [ids.d, ids.c, ids.b, ids.a]);
    const c = all.body.actions_caches.find(x => x.id === ids.c);
    assert.deepEqual(
      { ref: c.ref, key: c.key, version: c.version, size: c.size_in_bytes },
      { ref: 'refs/heads/topic', key: `${prefix}-b`, version: 'v1', size: 2 });
    const topic = await call(CACHES, 'GET', `/repos/${REPO}/actions/caches?key=${prefix}&ref=refs/heads/topic`);
    assert.deepEqual(topic.body.actions_caches.map(x => x.id), [ids.c]);
    const bySize = await call(CACHES, 'GET', `/repos/${REPO}/actions/caches?key=${prefix}&sort=size_in_bytes&direction=asc`);
    assert.deepEqual(bySize.body.actions_caches.map(x => x.size_in_bytes), [1, 2, 3, 4]);
  });

  it('pages with per_page and page, and says so in the Link header', async () => {
    const first = await call(CACHES, 'GET', `/repos/${REPO}/actions/caches?key=${prefix}&per_page=3`);
    assert.equal(first.body.actions_caches.length, 3);
    assert.equal(first.body.total_count, 4);
    const next = links(first).next;
    assert.equal(next.searchParams.get('page'), '2');
    assert.equal(next.searchParams.get('key'), prefix);
    const second = await call(CACHES, 'GET', next.pathname + next.search);
    assert.equal(second.body.actions_caches.length, 1);
    assert.deepEqual(Object.keys(links(second)).sort(), ['first', 'prev']);
  });

  it('deletes every cache of a key (optionally of one ref), then answers 404', async () => {
    const gone = await call(CACHES, 'DELETE', `/repos/${REPO}/actions/caches?key=${prefix}-b&ref=refs/heads/topic`);
    assert.deepEqual(gone.body.actions_caches.map(c => c.id), [ids.c]);
    const rest2 = await call(CACHES, 'DELETE', `/repos/${REPO}/actions/caches?key=${prefix}-b`);
    assert.deepEqual(rest2.body.actions_caches.map(c => c.id).sort(), [ids.b, ids.d].sort());
    const again = await rest('DELETE', `/repos/${REPO}/actions/caches?key=${prefix}-b`);
    assert.equal(again.status, 404);
    assert.equal(again.body.message, 'Not Found');
  });

  it('deletes a cache by id with 204, then answers 404', async () => {
    const res = await call(CACHE_ID, 'DELETE', `/repos/${REPO}/actions/caches/${ids.a}`);
    assert.equal(res.status, 204);
    assert.equal(res.body, undefined);
    assert.equal((await rest('DELETE', `/repos/${REPO}/actions/caches/${ids.a}`)).status, 404);
    const left = await call(CACHES, 'GET', `/repos/${REPO}/actions/caches?key=${prefix}`);
    assert.equal(left.body.total_count, 0);
  });
});

describe('artifacts', () => {
  let job;
  let id;
  let other;
  const name = unique('rest-art');

  before(async () => {
    job = await newJob();
    id = await rawArtifact(job, name, Buffer.from('PK-not-really-a-zip'), { hash: 'sha256:abc' });
    other = await rawArtifact(job, `${name}-other`, Buffer.from('second'));
  });

  it("lists a run's artifacts, filtered by name", async () => {
    const all = await call(RUN_ARTIFACTS, 'GET', `/repos/${REPO}/actions/runs/${job.run_id}/artifacts`);
    assert.deepEqual(all.body.artifacts.map(a => a.id), [other, id]);
    const one = await call(RUN_ARTIFACTS, 'GET', `/repos/${REPO}/actions/runs/${job.run_id}/artifacts?name=${name}`);
    assert.equal(one.body.total_count, 1);
    const a = one.body.artifacts[0];
    assert.equal(a.digest, 'sha256:abc');
    assert.equal(a.size_in_bytes, 19);
    assert.equal(a.workflow_run.id, job.run_id);
    assert.equal(a.archive_download_url, `${process.env.GITHUB_API_URL}/repos/${REPO}/actions/artifacts/${id}/zip`);
    const unknownRun = await rest('GET', `/repos/${REPO}/actions/runs/999999999/artifacts`);
    assert.equal(unknownRun.status, 404);
  });

  it("lists the repository's artifacts by name, and gets one", async () => {
    const byName = await call(ARTIFACTS, 'GET', `/repos/${REPO}/actions/artifacts?name=${name}`);
    assert.deepEqual(byName.body.artifacts.map(a => a.id), [id]);
    const one = await call(ARTIFACT, 'GET', `/repos/${REPO}/actions/artifacts/${id}`);
    assert.equal(one.body.name, name);
    assert.equal(one.body.expired, false);
  });

  it('redirects a download to a short-lived signed blob URL', async () => {
    const res = await call(DOWNLOAD, 'GET', `/repos/${REPO}/actions/artifacts/${id}/zip`);
    assert.equal(res.status, 302);
    const location = new URL(res.headers.get('location'));
    const expires = Date.parse(location.searchParams.get('se'));
    assert.ok(expires - Date.now() <= 61e3, 'expires within a minute');
    const blob = await fetch(location);
    assert.equal(blob.status, 200);
    assert.equal(await blob.text(), 'PK-not-really-a-zip');
    assert.match(blob.headers.get('content-disposition'), new RegExp(`filename="${name}.zip"`));
    const tar = await rest('GET', `/repos/${REPO}/actions/artifacts/${id}/tar`);
    assert.equal(tar.status, 404);
  });

  it('deletes an artifact with 204', async () => {
    const res = await call(ARTIFACT, 'DELETE', `/repos/${REPO}/actions/artifacts/${other}`);
    assert.equal(res.status, 204);
    assert.equal((await rest('GET', `/repos/${REPO}/actions/artifacts/${other}`)).status, 404);
  });
});

describe('authentication and errors', () => {
  it('wants GITHUB_TOKEN as Bearer or token, and says 401 otherwise', async () => {
    const route = `/repos/${REPO}/actions/caches`;
    assert.equal((await rest('GET', route, { auth: `token ${GITHUB_TOKEN}` })).status, 200);
    const none = await rest('GET', route, { auth: null });
    assert.equal(none.status, 401);
    assert.equal(none.body.message, 'Requires authentication');
    const wrong = await rest('GET', route, { auth: 'Bearer ghs_wrong' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.message, 'Bad credentials');
  });

  it('answers 404 for another repository', async () => {
    const res = await rest('GET', '/repos/someone/else/actions/caches');
    assert.equal(res.status, 404);
  });

  it('answers an injected rate limit with 429 and Retry-After', async () => {
    await addFault({ kind: 'rate_limited', method: 'rest:list_caches', times: 1, retry_after: 17 });
    const res = await rest('GET', `/repos/${REPO}/actions/caches`);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '17');
    assert.match(res.body.message, /rate limit/);
    assert.equal((await rest('GET', `/repos/${REPO}/actions/caches`)).status, 200, 'only the next call');
  });
});
