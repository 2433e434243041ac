'use strict';
// The action on GitHub's own services, as a hosted runner runs it: each job gets only
// ACTIONS_RESULTS_URL and ACTIONS_RUNTIME_TOKEN (from the fake of GitHub's results service,
// tests/gha/fake_results.py) and no store is configured, so ferry picks gha:// by itself.
// Needs the fake running (.ci/servers.sh start-gha writes .ci/cache/store-gha.env); without
// it these tests are skipped with a note, unless FERRY_TEST_REQUIRE_SERVERS=1 (as .ci/run sets).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { before, describe, it } = require('node:test');

const { fakeJob, runnerVariables, skipWithoutFake: skip } = require('./fake');
const { Job } = require('./harness');

/** A runner job whose only link to GitHub's services is the two variables the runner gives. */
async function runnerJob(name, { run } = {}) {
  const fake = await fakeJob(run ? { run_id: run.run_id, job: name } : { job: name });
  const job = new Job({
    name,
    runId: String(fake.run_id),
    env: runnerVariables(fake),
  });
  return { job, fake };
}

function ran(result) {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

describe('the action on gha:// with no store configured', { skip }, () => {
  // Keys unique to this run of the suite: the fake's caches outlive it.
  const tag = crypto.randomBytes(6).toString('hex');
  const key = `gha-${tag}-deps-{{ checksum "deps.lock" }}`;
  const restoreKeys = `gha-${tag}-deps-`;

  async function depsJob(lock) {
    const { job } = await runnerJob('build');
    job.write({ 'deps.lock': lock });
    const main = job.uses({ key, path: 'deps', 'restore-keys': restoreKeys });
    const restored = job.exists('deps/lib.txt') ? job.read('deps/lib.txt') : null;
    if (main.code === 0 && restored === null) {
      job.write({ 'deps/lib.txt': `installed for ${lock}` });
    }
    const [post] = job.complete();
    return { main, post, restored };
  }

  let first;
  before(async () => {
    if (!skip) first = await depsJob('v1');
  });

  it('misses, then saves in post', () => {
    const { main, post } = first;
    assert.equal(main.code, 0, ran(main));
    assert.equal(main.outputs['cache-hit'], 'false');
    assert.equal(JSON.parse(main.outputs.result).store, 'gha://', ran(main));
    assert.equal(post.code, 0, ran(post));
    assert.match(post.stdout, new RegExp(`Cache saved with key: ${main.outputs['cache-primary-key']}`), ran(post));
    assert.match(post.stderr, /saved cache .* to gha:\/\//, ran(post));
  });

  it('hits exactly in a later run and skips the save', async () => {
    const { main, post, restored } = await depsJob('v1');
    assert.equal(main.code, 0, ran(main));
    assert.equal(main.outputs['cache-hit'], 'true', ran(main));
    assert.equal(restored, 'installed for v1');
    assert.match(post.stdout, /Cache hit on the primary key .*; not saving/, ran(post));
  });

  it('hits partially through restore-keys, then saves the new key', async () => {
    const { main, post, restored } = await depsJob('v2');
    assert.equal(main.code, 0, ran(main));
    assert.equal(main.outputs['cache-hit'], 'false');
    assert.equal(JSON.parse(main.outputs.result).hit, 'partial', ran(main));
    assert.equal(main.outputs['cache-matched-key'], first.main.outputs['cache-primary-key']);
    assert.equal(restored, 'installed for v1');
    assert.match(post.stdout, /Cache saved with key: /, ran(post));
  });

  it('persists a workspace in one job and attaches it in another', async () => {
    const { job: build, fake } = await runnerJob('build');
    build.write({ 'dist/app.js': 'console.log("built")', 'dist/bin/tool': '#!/bin/sh\n' });
    fs.chmodSync(path.join(build.workspace, 'dist/bin/tool'), 0o755);
    const persisted = build.uses({ command: 'workspace-persist', root: '.', path: 'dist' });
    assert.equal(persisted.code, 0, ran(persisted));
    assert.equal(JSON.parse(persisted.outputs.result).store, 'gha://');
    build.complete();

    const { job: test } = await runnerJob('test', { run: fake });
    const attached = test.uses({ command: 'workspace-attach', at: 'from-build' });
    assert.equal(attached.code, 0, ran(attached));
    assert.equal(test.read('from-build/dist/app.js'), 'console.log("built")');
    const mode = fs.statSync(path.join(test.workspace, 'from-build/dist/bin/tool')).mode & 0o777;
    assert.equal(mode, 0o755);
    test.complete();
  });

  it('uploads artifacts in one job and downloads them in another', async () => {
    const { job: build, fake } = await runnerJob('build');
    build.write({ 'reports/junit.xml': '<testsuite failures="0"/>', 'reports/sub/log.txt': 'ok' });
    const up = build.uses({ command: 'artifacts-upload', path: 'reports', destination: 'test-results' });
    assert.equal(up.code, 0, ran(up));
    build.complete();

    const { job: later } = await runnerJob('report', { run: fake });
    const down = later.uses({ command: 'artifacts-download', job: 'build', to: 'got' });
    assert.equal(down.code, 0, ran(down));
    assert.equal(later.read('got/test-results/junit.xml'), '<testsuite failures="0"/>');
    assert.equal(later.read('got/test-results/sub/log.txt'), 'ok');
    later.complete();
  });

  it('keeps the signed URLs out of the log', async () => {
    const { job } = await runnerJob('build');
    job.write({ 'out/a.txt': 'a' });
    const up = job.uses({ command: 'artifacts-upload', path: 'out' });
    assert.equal(up.code, 0, ran(up));
    // Every signature ferry met was masked (on stderr, as --json keeps stdout one object),
    // and none of them appears anywhere else in the step's output.
    const masks = [...up.stderr.matchAll(/^::add-mask::(.+)$/gm)].map((m) => m[1]);
    assert.ok(masks.length > 0, ran(up));
    const rest = `${up.stdout}\n${up.stderr.replace(/^::add-mask::.*$/gm, '')}`;
    for (const secret of masks) assert.ok(!rest.includes(secret), `${secret} leaked:\n${rest}`);
    job.complete();
  });
});
