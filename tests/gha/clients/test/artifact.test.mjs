// @actions/artifact (the client upload-artifact and download-artifact use) uploads, lists,
// gets, downloads and deletes through the fake, over Twirp inside the run and over the
// REST API (findBy, with GITHUB_TOKEN) from anywhere.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  artifactClients, loadClient, newJob, use, unique, makeTree, readTree, tempDir, captured, state,
  reset, rest, advanceClock, addFault, callsOf, REPO, GITHUB_TOKEN
} from './helpers.mjs';

before(reset);

const [owner, repo] = REPO.split('/');

for (const client of artifactClients) {
  describe(client.name, () => {
    let artifacts;
    before(async () => {
      const mod = await loadClient(client);
      artifacts = new mod.DefaultArtifactClient();
    });

    async function upload(name, files, options) {
      const root = makeTree(files);
      const paths = Object.keys(files).map(f => path.join(root, f));
      const r = await captured(() => artifacts.uploadArtifact(name, paths, root, options));
      if (r.error) throw new Error(`upload ${name} failed: ${r.error.message}\n${r.out}`);
      return r.result;
    }

    const findBy = job => ({
      token: GITHUB_TOKEN, workflowRunId: job.run_id, repositoryOwner: owner, repositoryName: repo
    });

    it('uploads a zip, then lists, gets and downloads it inside the run', async () => {
      use(await newJob());
      const name = unique('art');
      const files = { 'report.txt': 'all green', 'logs/build.log': 'x'.repeat(10000) };
      const up = await upload(name, files);
      assert.ok(up.id > 0);
      assert.ok(up.size > 0);

      const { result: listed } = await captured(() => artifacts.listArtifacts());
      const mine = listed.artifacts.find(a => a.name === name);
      assert.equal(mine.id, up.id);
      assert.equal(mine.size, up.size);
      assert.ok(mine.createdAt instanceof Date && !isNaN(mine.createdAt));
      if (client.v >= 6) assert.equal(mine.digest, `sha256:${up.digest}`);

      const { result: got } = await captured(() => artifacts.getArtifact(name));
      assert.equal(got.artifact.id, up.id);

      const dest = tempDir('download');
      const { result: dl, error } = await captured(() => artifacts.downloadArtifact(up.id, { path: dest }));
      assert.equal(error, undefined);
      assert.equal(dl.downloadPath, dest);
      assert.deepEqual(readTree(dest), files);

      const entry = (await state()).artifacts.find(a => a.name === name);
      assert.equal(entry.version, client.v >= 6 ? 7 : 4, 'CreateArtifact version');
      if (client.v >= 6) assert.equal(entry.mime_type, 'application/zip');
    });

    it('shows artifacts to every job of the run, and none of another run', async () => {
      const first = await newJob({ job: 'build' });
      const sibling = await newJob({ run_id: first.run_id, job: 'test' });
      const stranger = await newJob();
      const name = unique('shared');
      use(first);
      const up = await upload(name, { 'a.txt': 'from build' });

      use(sibling);
      const dest = tempDir('sibling');
      const { result: got } = await captured(() => artifacts.getArtifact(name));
      assert.equal(got.artifact.id, up.id);
      await captured(() => artifacts.downloadArtifact(up.id, { path: dest }));
      assert.deepEqual(readTree(dest), { 'a.txt': 'from build' });

      use(stranger);
      const { result: none } = await captured(() => artifacts.listArtifacts());
      assert.equal(none.artifacts.some(a => a.name === name), false);
      const miss = await captured(() => artifacts.getArtifact(name));
      assert.match(String(miss.error), /Artifact not found/);
    });

    it('reads another run through the REST API with GITHUB_TOKEN (findBy)', async () => {
      const producer = await newJob();
      const consumer = await newJob();
      const name = unique('public');
      use(producer);
      const up = await upload(name, { 'x/y.txt': 'public bytes' });

      use(consumer);
      const { result: listed, error } = await captured(() => artifacts.listArtifacts({ findBy: findBy(producer) }));
      assert.equal(error, undefined);
      const mine = listed.artifacts.find(a => a.name === name);
      assert.equal(mine.id, up.id);
      assert.equal(mine.size, up.size);

      const { result: got } = await captured(() => artifacts.getArtifact(name, { findBy: findBy(producer) }));
      assert.equal(got.artifact.id, up.id);

      const dest = tempDir('public');
      const dl = await captured(() => artifacts.downloadArtifact(up.id, { path: dest, findBy: findBy(producer) }));
      assert.equal(dl.error, undefined, dl.out);
      assert.deepEqual(readTree(dest), { 'x/y.txt': 'public bytes' });
    });

    it('refuses a second artifact of the same name in a run with 409', async () => {
      const job = use(await newJob());
      const name = unique('twice');
      await upload(name, { 'a.txt': '1' });
      const sibling = use(await newJob({ run_id: job.run_id, job: 'other' }));
      const root = makeTree({ 'a.txt': '2' });
      const r = await captured(() => artifacts.uploadArtifact(name, [path.join(root, 'a.txt')], root));
      assert.match(String(r.error),
        /Failed to CreateArtifact: Received non-retryable error: Failed request: \(409\) Conflict: an artifact with this name already exists on the workflow run/);
      assert.ok(sibling);
    });

    it('deletes an artifact by name, inside the run and through the REST API', async () => {
      const job = use(await newJob());
      const inside = unique('del-in');
      const outside = unique('del-out');
      const a = await upload(inside, { 'a.txt': 'a' });
      const b = await upload(outside, { 'b.txt': 'b' });
      const del = await captured(() => artifacts.deleteArtifact(inside));
      assert.equal(del.result.id, a.id, del.out);
      const pub = await captured(() => artifacts.deleteArtifact(outside, { findBy: findBy(job) }));
      assert.equal(pub.error, undefined, pub.out);
      assert.equal(pub.result.id, b.id);
      const { result: listed } = await captured(() => artifacts.listArtifacts());
      assert.deepEqual(listed.artifacts.filter(x => [inside, outside].includes(x.name)), []);
      // The name is free again.
      await upload(inside, { 'a.txt': 'again' });
    });

    it('keeps an artifact for its retention days, then answers 410 and lists it no more', async () => {
      await reset();
      const job = use(await newJob());
      const name = unique('short');
      const up = await upload(name, { 'a.txt': 'brief' }, { retentionDays: 1 });
      const meta = await rest('GET', `/repos/${REPO}/actions/artifacts/${up.id}`);
      const days = (Date.parse(meta.body.expires_at) - Date.parse(meta.body.created_at)) / 86400e3;
      assert.ok(Math.abs(days - 1) < 0.01, `expires after ${days} days`);
      await advanceClock(2 * 86400);
      const fresh = use(await newJob({ run_id: job.run_id, job: 'later' }));
      const { result: listed } = await captured(() => artifacts.listArtifacts());
      assert.equal(listed.artifacts.some(a => a.name === name), false);
      const gone = await rest('GET', `/repos/${REPO}/actions/artifacts/${up.id}/zip`);
      assert.equal(gone.status, 410);
      assert.equal((await rest('GET', `/repos/${REPO}/actions/artifacts/${up.id}`)).body.expired, true);
      assert.ok(fresh);
      await reset();
    });

    it('retries CreateArtifact after a 429 and uploads', async () => {
      const job = use(await newJob());
      await addFault({ kind: 'rate_limited', method: 'CreateArtifact', times: 1, retry_after: 1, run_id: job.run_id });
      const up = await upload(unique('throttled'), { 'a.txt': 'patient' });
      assert.ok(up.id > 0);
      const calls = (await callsOf(job.run_id)).filter(c => c.method === 'CreateArtifact');
      assert.deepEqual(calls.map(c => c.status), [429, 200]);
    });

    if (client.v >= 6) {
      it('uploads a single file unzipped (skipArchive) and downloads it under its own name', async () => {
        use(await newJob());
        const dir = tempDir('raw');
        const file = path.join(dir, `${unique('raw')}.json`);
        writeFileSync(file, '{"raw": true}');
        const r = await captured(() => artifacts.uploadArtifact('ignored', [file], dir, { skipArchive: true }));
        assert.equal(r.error, undefined, r.out);
        const entry = (await state()).artifacts.find(a => a.id === r.result.id);
        assert.equal(entry.name, path.basename(file));
        assert.equal(entry.mime_type, 'application/json');
        const dest = tempDir('raw-dl');
        const dl = await captured(() => artifacts.downloadArtifact(r.result.id, { path: dest }));
        assert.equal(dl.error, undefined, dl.out);
        assert.equal(readFileSync(path.join(dest, path.basename(file)), 'utf8'), '{"raw": true}');
        const digest = createHash('sha256').update('{"raw": true}').digest('hex');
        assert.equal(entry.digest, `sha256:${digest}`);
      });
    }
  });
}
