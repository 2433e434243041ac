'use strict';
// The README's GitHub Actions quick start, exactly as written: actionlint
// accepts it (and, with the action's uses: pointed at ./action, its inputs),
// and its jobs run through the runner stand-in with the real ferry, with npm
// replaced by a stub that checks the cache and the workspace did their part.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it } = require('node:test');

const { fakeJob, fakeRun, runnerVariables, skipWithoutFake } = require('./fake');
const { ACTION_DIR, loadYaml, quickstart, runWorkflow, tempStore } = require('./harness');

const FIXTURES = path.join(__dirname, 'fixtures');
const snippet = quickstart('github-actions', 'docs/ci/github-actions.md');

function writeProject(workflowText) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-quickstart-'));
  fs.mkdirSync(path.join(dir, '.github/workflows'), { recursive: true });
  fs.writeFileSync(path.join(dir, '.github/workflows/ci.yml'), workflowText);
  spawnSync('git', ['init', '-q', dir]);
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

describe(`the GitHub Actions quick start (${path.relative(path.resolve(ACTION_DIR, '..'), snippet.file)})`, () => {
  it('passes actionlint as written', () => {
    const lint = actionlint(writeProject(snippet.yaml));
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);
  });

  it('passes actionlint with its inputs checked against action.yml', () => {
    assert.match(snippet.yaml, /uses: ferry-ci\/ferry\/action@v\d/);
    const dir = writeProject(snippet.yaml.replace(/uses: ferry-ci\/ferry\/action@\S+/g, 'uses: ./action'));
    fs.mkdirSync(path.join(dir, 'action'));
    fs.copyFileSync(path.join(ACTION_DIR, 'action.yml'), path.join(dir, 'action/action.yml'));
    fs.cpSync(path.join(ACTION_DIR, 'src'), path.join(dir, 'action/src'), { recursive: true });
    const lint = actionlint(dir);
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);

    // actionlint does check those inputs: a misspelt one fails.
    fs.writeFileSync(
      path.join(dir, '.github/workflows/ci.yml'),
      fs.readFileSync(path.join(dir, '.github/workflows/ci.yml'), 'utf8').replace('restore-keys:', 'restore-kys:'),
    );
    const broken = actionlint(dir);
    assert.notEqual(broken.status, 0);
    assert.match(broken.stdout, /restore-kys/);
  });

  // As a hosted runner runs it: no store and no secrets, only the runtime token each job gets,
  // here from the fake of GitHub's services.
  it('runs on GitHub\'s services: build misses and saves, test hits, attaches, uploads; a second run hits', { skip: skipWithoutFake }, async () => {
    assert.doesNotMatch(snippet.yaml, /FERRY_STORE|secrets\.|vars\./, 'the quick start needs no bucket and no secrets');
    const dir = writeProject(snippet.yaml);
    const workflow = loadYaml(path.join(dir, '.github/workflows/ci.yml'));
    const scratch = tempStore();
    const npmLog = path.join(scratch, 'npm.log');
    // A project of its own, so the fake's caches from earlier runs of this test do not hit.
    const project = `acme/quickstart-${path.basename(scratch).replace(/[^A-Za-z0-9]/g, '')}`;
    const options = {
      checkout: path.join(FIXTURES, 'project'),
      path: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
      env: { NPM_STUB_LOG: npmLog, FERRY_PROJECT: project },
    };

    const run = await fakeRun(Object.keys(workflow.jobs));
    const runId = run.runId;
    const first = runWorkflow(workflow, { ...options, runId, jobEnv: run.envFor });
    const everyStep = (jobs) =>
      Object.values(jobs).flatMap(({ steps, posts }) => [
        ...steps.map(({ step, result }) => ({ what: step.uses || step.run, result })),
        ...posts.map((result) => ({ what: 'post', result })),
      ]);
    for (const { what, result } of everyStep(first)) {
      if (result) assert.equal(result.code, 0, `${what}: ${ran(result)}`);
    }

    const buildCache = first.build.steps[1].result;
    assert.equal(buildCache.outputs['cache-hit'], 'false');
    assert.match(buildCache.outputs['cache-primary-key'], /^npm-\w+-\w+-[0-9a-f]{64}$/);
    assert.match(first.build.posts[0].stdout, /Cache saved with key/);

    const testCache = first.test.steps[1].result;
    assert.equal(testCache.outputs['cache-hit'], 'true');
    assert.match(first.test.posts[0].stdout, /not saving/);
    assert.equal(first.test.job.read('dist/app.js'), fs.readFileSync(path.join(FIXTURES, 'project/src/app.js'), 'utf8'));
    assert.deepEqual(fs.readFileSync(npmLog, 'utf8').trim().split('\n'), ['npm ci', 'npm run build', 'npm test']);

    // The uploaded reports are there for a later job of the run, with ferry and nothing else.
    const downloaded = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-reports-'));
    const later = await fakeJob({ run_id: Number(runId), job: 'report' });
    const download = spawnSync(
      'ferry',
      ['--project', project, 'artifacts', 'download', '--run', runId, '--job', 'test', '--to', downloaded],
      { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: os.tmpdir(), ...runnerVariables(later) } },
    );
    assert.equal(download.status, 0, download.stderr);
    assert.match(fs.readFileSync(path.join(downloaded, 'test-results/junit.xml'), 'utf8'), /failures="0"/);

    // The next push: the build job's cache hits exactly and npm ci still runs but nothing is saved.
    const next = await fakeRun(Object.keys(workflow.jobs));
    const second = runWorkflow(workflow, { ...options, runId: next.runId, jobEnv: next.envFor });
    assert.equal(second.build.steps[1].result.outputs['cache-hit'], 'true', ran(second.build.steps[1].result));
    assert.match(second.build.posts[0].stdout, /Cache hit on the primary key/);
    assert.equal(second.test.steps[4].result.code, 0, ran(second.test.steps[4].result));
  });
});
