'use strict';
// workspace-persist in one job and workspace-attach in a later job of the same
// workflow run (same GITHUB_RUN_ID), on fresh runner machines sharing a store.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { Job, newRunId, tempStore } = require('./harness');

function ran(result) {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

describe('commands: workspace-persist, workspace-attach', () => {
  it('hands files from one job to the next job of the run', () => {
    const store = tempStore();
    const runId = newRunId();

    const build = new Job({ name: 'build', runId });
    build.write({ 'out/dist/app.js': 'console.log(1)', 'out/dist/lib/util.js': 'util', 'out/tmp/scratch': 'x' });
    const persist = build.uses({ command: 'workspace-persist', root: 'out', path: 'dist', store });
    assert.equal(persist.code, 0, ran(persist));
    assert.ok(JSON.parse(persist.outputs.result));
    for (const post of build.complete()) assert.equal(post.code, 0, ran(post));

    const test = new Job({ name: 'test', runId });
    const attach = test.uses({ command: 'workspace-attach', at: 'ws', store });
    assert.equal(attach.code, 0, ran(attach));
    assert.equal(test.read('ws/dist/app.js'), 'console.log(1)');
    assert.equal(test.read('ws/dist/lib/util.js'), 'util');
    assert.equal(test.exists('ws/tmp/scratch'), false, 'only the persisted paths');
    for (const post of test.complete()) assert.equal(post.code, 0, ran(post));
  });

  it('does not see the workspace of another run', () => {
    const store = tempStore();
    const build = new Job({ name: 'build', runId: newRunId() });
    build.write({ 'out/dist/app.js': 'one' });
    assert.equal(build.uses({ command: 'workspace-persist', root: 'out', path: 'dist', store }).code, 0);

    const other = new Job({ name: 'test', runId: newRunId() });
    other.uses({ command: 'workspace-attach', at: 'ws', store });
    assert.equal(other.exists('ws/dist/app.js'), false);
  });

  it('requires root for workspace-persist', () => {
    const job = new Job({ name: 'build', runId: newRunId() });
    const persist = job.uses({ command: 'workspace-persist', path: 'dist', store: tempStore() });
    assert.equal(persist.code, 1);
    assert.match(persist.stdout, /::error::input root is required for command workspace-persist/);
  });
});
