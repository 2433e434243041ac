// Shared plumbing for the checks of tests/gha/fake_results.py against GitHub's own clients:
// jobs (runtime tokens and the environment the runner gives), the admin API, and capture of
// what the clients print (their warnings are the failures a workflow author would see).
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const FAKE = process.env.FERRY_GHA_FAKE_URL;
if (!FAKE) {
  throw new Error('FERRY_GHA_FAKE_URL is not set: source .ci/cache/store-gha.env (tests/gha/run.sh does)');
}
export const API = process.env.GITHUB_API_URL;
export const REPO = process.env.GITHUB_REPOSITORY;
export const GITHUB_TOKEN = process.env.GITHUB_TOKEN;
export const CACHE_SERVICE = 'github.actions.results.api.v1.CacheService';
export const ARTIFACT_SERVICE = 'github.actions.results.api.v1.ArtifactService';

const scratch = mkdtempSync(path.join(tmpdir(), 'ferry-gha-clients-'));
process.env.RUNNER_TEMP = path.join(scratch, 'runner-temp');
mkdirSync(process.env.RUNNER_TEMP, { recursive: true });

/** A call to the fake's admin API; throws on anything but 2xx. */
export async function admin(method, route, body) {
  const res = await fetch(`${FAKE}${route}`, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`admin ${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

export const reset = () => admin('POST', '/reset');
export const state = () => admin('GET', '/state');
export const addFault = spec => admin('POST', '/faults', spec);
export const advanceClock = seconds => admin('POST', '/clock', { advance_seconds: seconds });
export const configure = settings => admin('POST', '/config', settings);

/** The Twirp calls the fake answered for one run, in order: [{method, status}]. */
export async function callsOf(runId) {
  const all = await admin('GET', '/requests');
  return all.filter(r => r.kind === 'twirp' && r.run_id === runId).map(r => ({ method: r.method, status: r.status }));
}

/**
 * A new job (a run of its own unless run_id is given) and its runtime token. The returned
 * job's env is what the runner hands a JavaScript action; `use(job)` puts it in process.env,
 * where GitHub's clients read it.
 */
export async function newJob(spec = {}) {
  return admin('POST', '/jobs', spec);
}

export function use(job, { cacheMode } = {}) {
  Object.assign(process.env, job.env);
  // The runner exports ACTIONS_CACHE_MODE; leaving it out shows what the service itself does.
  if (cacheMode === null) delete process.env.ACTIONS_CACHE_MODE;
  return job;
}

export function unique(prefix) {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export function tempDir(name = 'dir') {
  return mkdtempSync(path.join(scratch, `${name}-`));
}

/** Writes {relative path: content} under a new folder and returns it. */
export function makeTree(files) {
  const root = tempDir('tree');
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), content);
  }
  return root;
}

/** {relative path: content} of every file under root. */
export function readTree(root) {
  const out = {};
  const walk = dir => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[path.relative(root, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(root);
  return out;
}

/**
 * Runs fn and returns its result with everything written to stdout meanwhile: @actions/core
 * prints info lines and `::warning::` / `::error::` commands there.
 */
export async function captured(fn) {
  const chunks = [];
  const write = process.stdout.write;
  process.stdout.write = (chunk, encoding, cb) => {
    chunks.push(String(chunk));
    if (process.env.FERRY_GHA_VERBOSE) process.stderr.write(chunk);
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
  let result;
  let error;
  try {
    result = await fn();
  } catch (e) {
    error = e;
  } finally {
    process.stdout.write = write;
  }
  const out = chunks.join('');
  return { result, error, out, warnings: commands(out, 'warning'), errors: commands(out, 'error') };
}

function commands(out, kind) {
  return out
    .split('\n')
    .filter(l => l.startsWith(`::${kind}`))
    .map(l => l.slice(l.indexOf('::', 2) + 2).replace(/%0A/g, '\n').replace(/%0D/g, '\r').replace(/%25/g, '%'));
}

/** A raw Twirp call with a job's token, as ferry will make it. */
export async function twirp(job, service, method, body) {
  const res = await fetch(new URL(`/twirp/${service}/${method}`, job.env.ACTIONS_RESULTS_URL), {
    method: 'POST',
    headers: { Authorization: `Bearer ${job.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body)
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

/** A raw REST call with GITHUB_TOKEN (or the given Authorization header). */
export async function rest(method, route, { auth = `Bearer ${GITHUB_TOKEN}` } = {}) {
  const res = await fetch(`${API}${route}`, {
    method,
    redirect: 'manual',
    headers: {
      Accept: 'application/vnd.github+json',
      'X-GitHub-Api-Version': '2022-11-28',
      ...(auth ? { Authorization: auth } : {})
    }
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/** The `version` @actions/cache computes for paths (cacheUtils.getCacheVersion, salt "1.0"). */
export function cacheVersion(paths, compressionMethod) {
  return createHash('sha256').update([...paths, compressionMethod, '1.0'].join('|')).digest('hex');
}

export const cacheClients = [
  { name: '@actions/cache 6.3.0', v: 6, load: () => import('@actions/cache') },
  { name: '@actions/cache 4.1.0', v: 4, load: () => import('actions-cache-v4') }
];

export const artifactClients = [
  { name: '@actions/artifact 6.2.1', v: 6, load: () => import('@actions/artifact') },
  { name: '@actions/artifact 2.3.2', v: 2, load: () => import('actions-artifact-v2') }
];

/** The functions of a client module whether it is ESM or CommonJS. */
export async function loadClient(client) {
  const mod = await client.load();
  return mod.saveCache || mod.DefaultArtifactClient ? mod : mod.default;
}

/** Put Blob: the whole body in one request, as Azure's SDKs do for small uploads. */
export async function putBlob(url, bytes, headers = {}) {
  const res = await fetch(url, {
    method: 'PUT',
    headers: { 'x-ms-blob-type': 'BlockBlob', 'Content-Type': 'application/octet-stream', ...headers },
    body: bytes
  });
  return { status: res.status, text: await res.text() };
}

/**
 * Put Block for each chunk, then Put Block List: how a stream of unknown length is uploaded
 * (block ids are base64 of equal-length strings, as Azure requires).
 */
export async function putBlocks(url, chunks) {
  const ids = chunks.map((_, i) => Buffer.from(`block-${String(i).padStart(6, '0')}`).toString('base64'));
  for (const [i, chunk] of chunks.entries()) {
    const res = await fetch(`${url}&comp=block&blockid=${encodeURIComponent(ids[i])}`, { method: 'PUT', body: chunk });
    if (res.status !== 201) throw new Error(`Put Block ${i}: ${res.status} ${await res.text()}`);
  }
  const xml = `<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map(id => `<Latest>${id}</Latest>`).join('')}</BlockList>`;
  const res = await fetch(`${url}&comp=blocklist`, {
    method: 'PUT', headers: { 'Content-Type': 'application/xml' }, body: xml
  });
  return { status: res.status, text: await res.text() };
}

/** CreateCacheEntry, Put Blob, FinalizeCacheEntryUpload; returns the entry id. */
export async function rawCacheSave(job, key, version, bytes) {
  const created = await twirp(job, CACHE_SERVICE, 'CreateCacheEntry', { key, version });
  if (created.status !== 200 || !created.body.ok) throw new Error(`CreateCacheEntry: ${JSON.stringify(created.body)}`);
  const put = await putBlob(created.body.signed_upload_url, bytes);
  if (put.status !== 201) throw new Error(`Put Blob: ${put.status} ${put.text}`);
  const fin = await twirp(job, CACHE_SERVICE, 'FinalizeCacheEntryUpload', { key, version, size_bytes: String(bytes.length) });
  if (!fin.body.ok) throw new Error(`FinalizeCacheEntryUpload: ${JSON.stringify(fin.body)}`);
  return Number(fin.body.entry_id);
}

/** CreateArtifact, Put Blob, FinalizeArtifact with the job's own ids; returns the artifact id. */
export async function rawArtifact(job, name, bytes, { hash, mimeType = 'application/zip' } = {}) {
  const ids = { workflow_run_backend_id: job.run_backend_id, workflow_job_run_backend_id: job.job_backend_id };
  const created = await twirp(job, ARTIFACT_SERVICE, 'CreateArtifact', { ...ids, name, version: 7, mime_type: mimeType });
  if (created.status !== 200) throw new Error(`CreateArtifact: ${JSON.stringify(created.body)}`);
  const put = await putBlob(created.body.signed_upload_url, bytes, { 'x-ms-blob-content-type': mimeType });
  if (put.status !== 201) throw new Error(`Put Blob: ${put.status} ${put.text}`);
  const fin = await twirp(job, ARTIFACT_SERVICE, 'FinalizeArtifact', {
    ...ids, name, size: String(bytes.length), ...(hash ? { hash } : {})
  });
  if (fin.status !== 200) throw new Error(`FinalizeArtifact: ${JSON.stringify(fin.body)}`);
  return Number(fin.body.artifact_id);
}
