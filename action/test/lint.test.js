'use strict';
// The action's metadata and every workflow that shows it: action.yml against
// check-jsonschema's vendored GitHub Actions schema, and actionlint over
// .github/workflows/ and the example workflows in action/README.md (with the
// action's uses: pointed at a copy of ./action, so actionlint checks inputs).

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it } = require('node:test');

const { ACTION_DIR, REPO_DIR } = require('./harness');

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  if (result.error) throw result.error;
  return result;
}

/** A throw-away repository holding `workflows` and a copy of the action at ./action. */
function lintProject(workflows) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-lint-'));
  run('git', ['init', '-q', dir]);
  fs.mkdirSync(path.join(dir, '.github/workflows'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'action'));
  fs.copyFileSync(path.join(ACTION_DIR, 'action.yml'), path.join(dir, 'action/action.yml'));
  fs.cpSync(path.join(ACTION_DIR, 'src'), path.join(dir, 'action/src'), { recursive: true });
  for (const [name, text] of Object.entries(workflows)) {
    fs.writeFileSync(
      path.join(dir, '.github/workflows', name),
      text.replace(/uses: ferry-ci\/ferry\/action@\S+/g, 'uses: ./action'),
    );
  }
  return dir;
}

describe('action.yml', () => {
  it('validates against the vendored github-actions schema', () => {
    const result = run('check-jsonschema', ['--builtin-schema', 'vendor.github-actions', 'action.yml'], {
      cwd: ACTION_DIR,
    });
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  it('runs main and post on node24, post always (it decides itself whether to save)', () => {
    const text = fs.readFileSync(path.join(ACTION_DIR, 'action.yml'), 'utf8');
    assert.match(text, /\n {2}using: node24\n {2}main: src\/main\.js\n {2}post: src\/post\.js\n {2}post-if: always\(\)\n/);
  });
});

describe('workflows', () => {
  const workflowDir = path.join(REPO_DIR, '.github/workflows');
  const files = fs.readdirSync(workflowDir).filter((name) => /\.ya?ml$/.test(name));

  it('.github/workflows/ has release.yml and an example using the action', () => {
    assert.ok(files.includes('release.yml'));
    const usesAction = files.filter((name) =>
      /uses: \.\/action\b/.test(fs.readFileSync(path.join(workflowDir, name), 'utf8')),
    );
    assert.ok(usesAction.length > 0, 'a workflow uses ./action');
  });

  for (const name of files) {
    it(`.github/workflows/${name} passes actionlint`, () => {
      const result = run('actionlint', ['-no-color', `.github/workflows/${name}`], { cwd: REPO_DIR });
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });
  }

  const readme = fs.readFileSync(path.join(ACTION_DIR, 'README.md'), 'utf8');
  const examples = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
    .map((match) => match[1])
    .filter((text) => /^jobs:/m.test(text));

  it('action/README.md has example workflows', () => {
    assert.ok(examples.length >= 2, `found ${examples.length}`);
  });

  examples.forEach((text, index) => {
    it(`action/README.md example workflow ${index + 1} passes actionlint, inputs checked`, () => {
      const dir = lintProject({ [`example-${index + 1}.yml`]: text });
      const result = run('actionlint', ['-no-color'], { cwd: dir });
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });
  });
});
