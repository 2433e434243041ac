'use strict';
// The `cache` command end to end, as the runner runs it: restore in main, save
// in post, against the real ferry on PATH and a local store.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { parseJson } = require('../src/ferry');
const { Job, inputEnvName, newRunId, tempStore } = require('./harness');

const KEY = 'deps-{{ checksum "deps.lock" }}';

function ran(result) {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

/** A job that restores `deps/`, "installs" it if missing, and ends. */
function depsJob({ store, lock, inputs = {}, status }) {
  const job = new Job({ name: 'build', runId: newRunId() });
  job.write({ 'deps.lock': lock });
  const main = job.uses({ key: KEY, path: 'deps', 'restore-keys': 'deps-', store, ...inputs });
  if (main.code === 0 && !job.exists('deps/lib.txt')) {
    job.write({ 'deps/lib.txt': `installed for ${lock}`, 'deps/nested/more.txt': 'more' });
  }
  const [post] = job.complete({ status });
  return { job, main, post };
}

describe('the runner contract', () => {
  it('names inputs as the runner does: upper case, dashes kept', () => {
    assert.equal(inputEnvName('restore-keys'), 'INPUT_RESTORE-KEYS');
    assert.equal(inputEnvName('fail-on-cache-miss'), 'INPUT_FAIL-ON-CACHE-MISS');
  });
});

describe("reading ferry's --json output", () => {
  it('takes the result object, and the error object a failing command adds', () => {
    const result = { hit: 'miss', key: 'k', matched_key: null };
    const error = { error: 'no cache matched key "k" (--fail-on-miss)', exit_code: 3 };
    assert.deepEqual(parseJson(`${JSON.stringify(result)}\n`), { result, error: null });
    assert.deepEqual(parseJson(`${JSON.stringify(result)}\n${JSON.stringify(error)}\n`), { result, error });
    assert.deepEqual(parseJson(`${JSON.stringify(error)}\n`), { result: null, error });
    assert.deepEqual(parseJson(''), { result: null, error: null });
  });
});

describe('command: cache', () => {
  it('misses, then saves in post', () => {
    const store = tempStore();
    const { main, post } = depsJob({ store, lock: 'v1' });
    assert.equal(main.code, 0, ran(main));
    assert.equal(main.outputs['cache-hit'], 'false');
    assert.match(main.outputs['cache-primary-key'], /^deps-[0-9a-f]{64}$/);
    assert.equal(main.outputs['cache-matched-key'], '');
    assert.equal(JSON.parse(main.outputs.result).hit, 'miss');
    assert.equal(main.state.hit, 'miss');
    assert.equal(main.state.primary_key, main.outputs['cache-primary-key']);
    assert.equal(post.code, 0, ran(post));
    assert.match(post.stdout, /ferry .*cache save/);
    assert.match(post.stdout, new RegExp(`Cache saved with key: ${main.outputs['cache-primary-key']}`));
  });

  it('hits exactly on the next run, and post skips the save', () => {
    const store = tempStore();
    const first = depsJob({ store, lock: 'v1' });
    assert.equal(first.post.code, 0, ran(first.post));

    const { job, main, post } = depsJob({ store, lock: 'v1' });
    assert.equal(main.code, 0, ran(main));
    assert.equal(main.outputs['cache-hit'], 'true');
    assert.equal(main.outputs['cache-primary-key'], first.main.outputs['cache-primary-key']);
    assert.equal(main.outputs['cache-matched-key'], main.outputs['cache-primary-key']);
    assert.equal(job.read('deps/lib.txt'), 'installed for v1');
    assert.equal(job.read('deps/nested/more.txt'), 'more');
    assert.equal(post.code, 0, ran(post));
    assert.match(post.stdout, /Cache hit on the primary key .*not saving/);
    assert.doesNotMatch(post.stdout, /cache save/);
  });

  it('restores a partial hit from restore-keys, and post saves the new key', () => {
    const store = tempStore();
    const first = depsJob({ store, lock: 'v1' });
    assert.equal(first.post.code, 0, ran(first.post));

    const second = depsJob({ store, lock: 'v2' });
    assert.equal(second.main.code, 0, ran(second.main));
    assert.equal(second.main.outputs['cache-hit'], 'false');
    assert.equal(second.main.outputs['cache-matched-key'], first.main.outputs['cache-primary-key']);
    assert.notEqual(second.main.outputs['cache-primary-key'], first.main.outputs['cache-primary-key']);
    assert.equal(JSON.parse(second.main.outputs.result).hit, 'partial');
    assert.equal(second.job.read('deps/lib.txt'), 'installed for v1');
    assert.match(second.post.stdout, /Cache saved with key/, ran(second.post));

    const third = depsJob({ store, lock: 'v2' });
    assert.equal(third.main.outputs['cache-hit'], 'true', ran(third.main));
    assert.equal(third.main.outputs['cache-matched-key'], second.main.outputs['cache-primary-key']);
  });

  it('does not save when the job failed', () => {
    const store = tempStore();
    const failed = depsJob({ store, lock: 'v1', status: 'failure' });
    assert.equal(failed.post.code, 0, ran(failed.post));
    assert.match(failed.post.stdout, /job status is failure/);
    assert.doesNotMatch(failed.post.stdout, /cache save/);

    const next = depsJob({ store, lock: 'v1' });
    assert.equal(next.main.outputs['cache-hit'], 'false', 'nothing was saved by the failed job');
  });

  it('saves a failed job with save-on-failure: true', () => {
    const store = tempStore();
    const failed = depsJob({ store, lock: 'v1', status: 'failure', inputs: { 'save-on-failure': 'true' } });
    assert.match(failed.post.stdout, /Cache saved with key/, ran(failed.post));
    const next = depsJob({ store, lock: 'v1' });
    assert.equal(next.main.outputs['cache-hit'], 'true', ran(next.main));
  });

  it('saves under the key main rendered, even if the hashed file changed during the job', () => {
    const store = tempStore();
    const job = new Job({ name: 'build', runId: newRunId() });
    job.write({ 'deps.lock': 'before' });
    const main = job.uses({ key: KEY, path: 'deps', store });
    job.write({ 'deps.lock': 'after', 'deps/lib.txt': 'x' });
    const [post] = job.complete();
    assert.match(post.stdout, new RegExp(`Cache saved with key: ${main.outputs['cache-primary-key']}`), ran(post));
  });

  it('fails the step on a miss with fail-on-cache-miss, and post does not save', () => {
    const store = tempStore();
    const { main, post } = depsJob({ store, lock: 'v1', inputs: { 'fail-on-cache-miss': 'true' } });
    assert.equal(main.code, 1, ran(main));
    assert.match(main.stdout, /::error::no cache entry matches key deps-[0-9a-f]{64}/);
    assert.equal(main.outputs['cache-hit'], 'false');
    assert.doesNotMatch(post.stdout, /cache save/, ran(post));
  });

  it('with lookup-only reports a hit and downloads nothing', () => {
    const store = tempStore();
    depsJob({ store, lock: 'v1' });
    const job = new Job({ name: 'build', runId: newRunId() });
    job.write({ 'deps.lock': 'v1' });
    const main = job.uses({ key: KEY, path: 'deps', store, 'lookup-only': 'true' });
    assert.equal(main.code, 0, ran(main));
    assert.equal(main.outputs['cache-hit'], 'true');
    assert.equal(job.exists('deps/lib.txt'), false);
    const [post] = job.complete();
    assert.doesNotMatch(post.stdout, /cache save/);
  });

  it('runs ferry in working-directory: templates and paths are relative to it', () => {
    const store = tempStore();
    const first = new Job({ name: 'build', runId: newRunId() });
    first.write({ 'app/deps.lock': 'v1' });
    const inputs = { key: KEY, path: 'deps', store, 'working-directory': 'app' };
    assert.equal(first.uses(inputs).code, 0);
    first.write({ 'app/deps/lib.txt': 'in app' });
    const [post] = first.complete();
    assert.match(post.stdout, /Cache saved with key/, ran(post));

    const second = new Job({ name: 'build', runId: newRunId() });
    second.write({ 'app/deps.lock': 'v1' });
    const main = second.uses(inputs);
    assert.equal(main.outputs['cache-hit'], 'true', ran(main));
    assert.equal(second.read('app/deps/lib.txt'), 'in app');
    assert.equal(second.exists('deps'), false);
  });

  it('fails clearly without a key', () => {
    const job = new Job({ name: 'build', runId: newRunId() });
    const main = job.uses({ path: 'deps', store: tempStore() });
    assert.equal(main.code, 1);
    assert.match(main.stdout, /::error::input key is required for command cache/);
  });
});

describe('commands: cache-save and cache-restore', () => {
  it('save in one step and restore in another, with no post-step save', () => {
    const store = tempStore();
    const saver = new Job({ name: 'build', runId: newRunId() });
    saver.write({ 'deps.lock': 'v1', 'deps/lib.txt': 'saved explicitly' });
    const save = saver.uses({ command: 'cache-save', key: KEY, path: 'deps', store });
    assert.equal(save.code, 0, ran(save));
    assert.equal(JSON.parse(save.outputs.result).saved, true);
    const again = saver.uses({ command: 'cache-save', key: KEY, path: 'deps', store });
    assert.equal(JSON.parse(again.outputs.result).saved, false, ran(again));
    assert.equal(JSON.parse(again.outputs.result).reason, 'exists');
    for (const post of saver.complete()) assert.doesNotMatch(post.stdout, /ferry .*cache/);

    const restorer = new Job({ name: 'build', runId: newRunId() });
    restorer.write({ 'deps.lock': 'v1' });
    const restore = restorer.uses({ command: 'cache-restore', key: KEY, store });
    assert.equal(restore.code, 0, ran(restore));
    assert.equal(restore.outputs['cache-hit'], 'true');
    assert.equal(restorer.read('deps/lib.txt'), 'saved explicitly');
    const [post] = restorer.complete();
    assert.doesNotMatch(post.stdout, /cache save/);
  });
});
