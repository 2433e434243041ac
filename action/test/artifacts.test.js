'use strict';
// artifacts-upload in one job, artifacts-download of that job's artifacts in another.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { Job, newRunId, tempStore } = require('./harness');

function ran(result) {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

describe('commands: artifacts-upload, artifacts-download', () => {
  it('uploads a folder under a destination and downloads it in another job', () => {
    const store = tempStore();
    const runId = newRunId();

    const test = new Job({ name: 'test', runId });
    test.write({ 'reports/junit.xml': '<testsuites/>', 'reports/coverage/index.html': '<html/>' });
    const upload = test.uses({ command: 'artifacts-upload', path: 'reports', destination: 'test-results', store });
    assert.equal(upload.code, 0, ran(upload));
    for (const post of test.complete()) assert.equal(post.code, 0, ran(post));

    const report = new Job({ name: 'report', runId });
    const download = report.uses({ command: 'artifacts-download', job: 'test', to: 'downloaded', store });
    assert.equal(download.code, 0, ran(download));
    assert.equal(report.read('downloaded/test-results/junit.xml'), '<testsuites/>');
    assert.equal(report.read('downloaded/test-results/coverage/index.html'), '<html/>');
  });

  it('downloads only what the pattern matches', () => {
    const store = tempStore();
    const runId = newRunId();
    const test = new Job({ name: 'test', runId });
    test.write({ 'reports/junit.xml': 'x', 'reports/coverage/index.html': 'y' });
    assert.equal(test.uses({ command: 'artifacts-upload', path: 'reports', destination: 'r', store }).code, 0);

    const report = new Job({ name: 'report', runId });
    const download = report.uses({
      command: 'artifacts-download',
      job: 'test',
      pattern: 'r/*.xml',
      to: 'got',
      store,
    });
    assert.equal(download.code, 0, ran(download));
    assert.equal(report.read('got/r/junit.xml'), 'x');
    assert.equal(report.exists('got/r/coverage/index.html'), false);
  });

  it('refuses to replace an uploaded path unless overwrite is true', () => {
    const store = tempStore();
    const job = new Job({ name: 'test', runId: newRunId() });
    job.write({ 'report.txt': 'one' });
    const inputs = { command: 'artifacts-upload', path: 'report.txt', store };
    assert.equal(job.uses(inputs).code, 0);
    const again = job.uses(inputs);
    assert.equal(again.code, 1, ran(again));
    assert.match(again.stdout, /::error::ferry artifacts upload failed with exit code 1/);
    job.write({ 'report.txt': 'two' });
    assert.equal(job.uses({ ...inputs, overwrite: 'true' }).code, 0);
  });
});
