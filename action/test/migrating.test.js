'use strict';
// The GitHub workflows of docs/migrating.md (its `<!-- github-actions:NAME -->`
// sections), exactly as written: actionlint accepts them, with their inputs
// checked against action.yml, and they run through the runner stand-in with
// the real ferry, npm replaced by the stub that checks the cache did its part.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it } = require('node:test');

const { ACTION_DIR, REPO_DIR, loadYaml, newRunId, runWorkflow, tempStore } = require('./harness');

const FIXTURES = path.join(__dirname, 'fixtures');
const PAGE = path.join(REPO_DIR, 'docs/migrating.md');

/** The yaml block of every `<!-- github-actions:NAME -->` section, by NAME. */
function workflows() {
  const text = fs.readFileSync(PAGE, 'utf8');
  const found = {};
  for (const match of text.matchAll(/<!-- github-actions:([\w-]+) -->([\s\S]*?)<!-- \/github-actions:\1 -->/g)) {
    const block = match[2].match(/```ya?ml\n([\s\S]*?)```/);
    if (!block) throw new Error(`github-actions:${match[1]} in ${PAGE} has no yaml block`);
    found[match[1]] = block[1];
  }
  return found;
}

function writeProject(workflowText) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-migrating-'));
  fs.mkdirSync(path.join(dir, '.github/workflows'), { recursive: true });
  fs.writeFileSync(path.join(dir, '.github/workflows/ci.yml'), workflowText);
  return dir;
}

function actionlint(dir) {
  const result = spawnSync('actionlint', ['-no-color', '.github/workflows/ci.yml'], { cwd: dir, encoding: 'utf8' });
  if (result.error) throw result.error;
  return result;
}

function ran(result) {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

describe('docs/migrating.md, GitHub workflows', () => {
  const found = workflows();

  it('has the actions/cache section', () => {
    assert.deepEqual(Object.keys(found), ['actions-cache']);
  });

  for (const [name, yaml] of Object.entries(found)) {
    it(`${name}: passes actionlint, with its inputs checked against action.yml`, () => {
      const asWritten = actionlint(writeProject(yaml));
      assert.equal(asWritten.status, 0, asWritten.stdout + asWritten.stderr);
      const dir = writeProject(yaml.replace(/uses: ferry-ci\/ferry\/action@\S+/g, 'uses: ./action'));
      fs.mkdirSync(path.join(dir, 'action'));
      fs.copyFileSync(path.join(ACTION_DIR, 'action.yml'), path.join(dir, 'action/action.yml'));
      const local = actionlint(dir);
      assert.equal(local.status, 0, local.stdout + local.stderr);
    });
  }

  it('actions-cache runs: the build misses, saves and uploads; report downloads; the next push hits', () => {
    const dir = writeProject(found['actions-cache']);
    const workflow = loadYaml(path.join(dir, '.github/workflows/ci.yml'));
    const store = tempStore();
    const options = {
      checkout: path.join(FIXTURES, 'project'),
      vars: { FERRY_STORE: store },
      path: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
    };
    const first = runWorkflow(workflow, { ...options, runId: newRunId() });
    for (const [job, { steps, posts }] of Object.entries(first)) {
      for (const { step, result } of steps) {
        if (result) assert.equal(result.code, 0, `${job} ${step.uses || step.run}: ${ran(result)}`);
      }
      for (const post of posts) assert.equal(post.code, 0, `${job} post: ${ran(post)}`);
    }
    assert.equal(first.build.steps[1].result.outputs['cache-hit'], 'false');
    assert.match(first.build.posts[0].stdout, /Cache saved with key: npm-\w+-[0-9a-f]{64}/);
    assert.match(first.report.steps[1].result.stdout, /failures="0"/);

    const second = runWorkflow(workflow, { ...options, runId: newRunId() });
    assert.equal(second.build.steps[1].result.outputs['cache-hit'], 'true', ran(second.build.steps[1].result));
    assert.match(second.report.steps[1].result.stdout, /failures="0"/);
  });
});
