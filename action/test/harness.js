'use strict';
// Runs the action the way the GitHub Actions runner does: each step's `main`,
// and at the end of the job each `post` in reverse order, as separate Node
// processes in the job's workspace, with INPUT_* variables (defaults from
// action.yml, names upper-cased with dashes kept), fresh GITHUB_OUTPUT /
// GITHUB_STATE / GITHUB_ENV / GITHUB_PATH files per step, STATE_* handed to
// post, and the GITHUB_* / RUNNER_* variables a hosted runner sets.

const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ACTION_DIR = path.resolve(__dirname, '..');
const REPO_DIR = path.resolve(ACTION_DIR, '..');

/** Parses YAML with PyYAML (installed by .ci/install-tools.sh): Node has no YAML parser. */
function loadYaml(file) {
  const result = spawnSync(
    'python3',
    [
      '-c',
      'import json, sys, yaml\n' +
        'doc = yaml.load(open(sys.argv[1], encoding="utf-8"), Loader=yaml.BaseLoader)\n' +
        'json.dump(doc, sys.stdout)',
      file,
    ],
    { encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`failed to parse ${file} as YAML: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

let actionYml;
function actionMetadata() {
  if (!actionYml) actionYml = loadYaml(path.join(ACTION_DIR, 'action.yml'));
  return actionYml;
}

/** The variable the runner sets for input `name`: `restore-keys` -> `INPUT_RESTORE-KEYS`. */
function inputEnvName(name) {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

/** Reads a file written with `name=value` or `name<<DELIM ... DELIM` lines (GITHUB_OUTPUT and friends). */
function parseFileCommands(text) {
  const values = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const heredoc = line.match(/^([^=<]+)<<(.+)$/);
    if (heredoc) {
      const [, name, delimiter] = heredoc;
      const value = [];
      i++;
      while (i < lines.length && lines[i] !== delimiter) value.push(lines[i++]);
      if (i >= lines.length) throw new Error(`unterminated ${name}<<${delimiter} in file command`);
      values[name] = value.join('\n');
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 1) throw new Error(`malformed file command line: ${JSON.stringify(line)}`);
    values[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return values;
}

/** `${{ job.status }}` and friends in action.yml defaults, for the contexts a test provides. */
function evaluateDefault(value, contexts) {
  return value.replace(/\$\{\{\s*([\w.-]+)\s*\}\}/g, (match, expression) => {
    const [context, ...rest] = expression.split('.');
    const scope = contexts[context];
    const found = scope && rest.reduce((object, part) => (object ? object[part] : undefined), scope);
    if (found === undefined) throw new Error(`harness cannot evaluate ${match} in an input default`);
    return String(found);
  });
}

function mkdtemp(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** One job on a fresh runner machine: its own workspace, temp, tool cache and home. */
class Job {
  /**
   * @param {object} options
   * @param {string} options.name     GITHUB_JOB
   * @param {string} options.runId    GITHUB_RUN_ID, shared by the jobs of one workflow run
   * @param {object} [options.env]    extra environment (workflow or job `env:`)
   * @param {string} [options.path]   PATH (default this process's, where the real ferry is)
   * @param {string} [options.githubToken]  `${{ github.token }}` (default none)
   */
  constructor({ name, runId, env = {}, path: searchPath = process.env.PATH, githubToken = '' }) {
    this.name = name;
    this.githubToken = githubToken;
    this.root = mkdtemp(`ferry-action-${name}-`);
    this.workspace = path.join(this.root, 'workspace');
    this.temp = path.join(this.root, 'runner-temp');
    this.toolCache = path.join(this.root, 'tool-cache');
    this.home = path.join(this.root, 'home');
    for (const dir of [this.workspace, this.temp, this.toolCache, this.home]) {
      fs.mkdirSync(dir, { recursive: true });
    }
    this.status = 'success';
    this.steps = [];
    this.pathPrepend = [];
    this.env = {
      PATH: searchPath,
      HOME: this.home,
      USERPROFILE: this.home,
      XDG_CACHE_HOME: path.join(this.home, '.cache'),
      LANG: 'C.UTF-8',
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_WORKSPACE: this.workspace,
      GITHUB_JOB: name,
      GITHUB_RUN_ID: runId,
      GITHUB_RUN_NUMBER: '7',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_WORKFLOW: 'ci',
      GITHUB_EVENT_NAME: 'push',
      GITHUB_REPOSITORY: 'ferry-ci/example',
      GITHUB_REPOSITORY_OWNER: 'ferry-ci',
      GITHUB_REF: 'refs/heads/main',
      GITHUB_REF_NAME: 'main',
      GITHUB_REF_TYPE: 'branch',
      GITHUB_SHA: 'a'.repeat(40),
      GITHUB_SERVER_URL: 'https://github.com',
      GITHUB_ACTION_REPOSITORY: 'ferry-ci/ferry',
      RUNNER_OS: { linux: 'Linux', darwin: 'macOS', win32: 'Windows' }[process.platform],
      RUNNER_ARCH: { x64: 'X64', arm64: 'ARM64' }[process.arch],
      RUNNER_TEMP: this.temp,
      RUNNER_TOOL_CACHE: this.toolCache,
      ...env,
    };
  }

  /** Writes `files` ({relative path: contents}) into the workspace. */
  write(files) {
    for (const [relative, contents] of Object.entries(files)) {
      const file = path.join(this.workspace, relative);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, contents);
    }
  }

  read(relative) {
    return fs.readFileSync(path.join(this.workspace, relative), 'utf8');
  }

  exists(relative) {
    return fs.existsSync(path.join(this.workspace, relative));
  }

  currentEnv() {
    const env = { ...this.env };
    if (this.pathPrepend.length > 0) {
      env.PATH = [...this.pathPrepend, env.PATH].join(path.delimiter);
    }
    return env;
  }

  inputsEnv(inputs) {
    const declared = actionMetadata().inputs || {};
    const unexpected = Object.keys(inputs).filter((name) => !(name in declared));
    if (unexpected.length > 0) {
      throw new Error(`unexpected input(s) ${unexpected.join(', ')}; valid: ${Object.keys(declared).join(', ')}`);
    }
    const env = {};
    const contexts = { job: { status: this.status }, github: { token: this.githubToken } };
    for (const [name, spec] of Object.entries(declared)) {
      let value;
      if (name in inputs) value = String(inputs[name]);
      else if (spec && spec.default !== undefined) value = evaluateDefault(String(spec.default), contexts);
      else continue;
      env[inputEnvName(name)] = value;
    }
    return env;
  }

  runNode(stage, script, inputs, extraEnv) {
    const files = {};
    const stepDir = fs.mkdtempSync(path.join(this.temp, "_runner_file_commands-"));
    for (const name of ['GITHUB_OUTPUT', 'GITHUB_STATE', 'GITHUB_ENV', 'GITHUB_PATH', 'GITHUB_STEP_SUMMARY']) {
      files[name] = path.join(stepDir, `${name.toLowerCase()}_${crypto.randomUUID()}`);
      fs.writeFileSync(files[name], '');
    }
    const env = { ...this.currentEnv(), ...this.inputsEnv(inputs), ...extraEnv, ...files };
    const result = spawnSync(process.execPath, [path.join(ACTION_DIR, script)], {
      cwd: this.workspace,
      env,
      encoding: 'utf8',
      timeout: 300000,
    });
    if (result.error) throw result.error;
    const outputs = parseFileCommands(fs.readFileSync(files.GITHUB_OUTPUT, 'utf8'));
    const state = parseFileCommands(fs.readFileSync(files.GITHUB_STATE, 'utf8'));
    Object.assign(this.env, parseFileCommands(fs.readFileSync(files.GITHUB_ENV, 'utf8')));
    const added = fs.readFileSync(files.GITHUB_PATH, 'utf8').split(/\r?\n/).filter(Boolean);
    // The runner prepends each line in turn, so the last one ends up first.
    this.pathPrepend.unshift(...[...added].reverse());
    return {
      stage,
      code: result.status,
      stdout: result.stdout,
      stderr: result.stderr,
      log: `${result.stdout}\n${result.stderr}`,
      outputs,
      state,
      addedPath: added,
      env,
    };
  }

  /** Runs a `run:` step as the runner's default shell does on Linux (`bash -e {0}`). */
  run(script, { env = {} } = {}) {
    const file = path.join(this.temp, `step-${crypto.randomUUID()}.sh`);
    fs.writeFileSync(file, script);
    const result = spawnSync('bash', ['--noprofile', '--norc', '-e', file], {
      cwd: this.workspace,
      env: { ...this.currentEnv(), ...env },
      encoding: 'utf8',
      timeout: 300000,
    });
    if (result.error) throw result.error;
    if (result.status !== 0) this.status = 'failure';
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Runs one `uses:` step of the action (its main); a failing step fails the job. */
  uses(inputs = {}, { env = {} } = {}) {
    const main = this.runNode('main', actionMetadata().runs.main, inputs, env);
    const step = { inputs, env, main };
    this.steps.push(step);
    if (main.code !== 0) this.status = 'failure';
    return main;
  }

  /**
   * Ends the job: runs each step's post (post-if: always()) in reverse order,
   * with the state its main saved. `status` overrides the job status the
   * posts see (`${{ job.status }}`).
   */
  complete({ status } = {}) {
    if (status) this.status = status;
    const posts = [];
    for (const step of [...this.steps].reverse()) {
      const stateEnv = {};
      for (const [name, value] of Object.entries(step.main.state)) stateEnv[`STATE_${name}`] = value;
      step.post = this.runNode('post', actionMetadata().runs.post, step.inputs, { ...step.env, ...stateEnv });
      posts.unshift(step.post);
    }
    return posts;
  }
}

/**
 * The copy-paste quick start between `<!-- quickstart:NAME -->` markers: from
 * the root README once it holds it, else from the docs page it is moved from. Returns { file, yaml } with the fenced YAML block.
 */
function quickstart(name, docsPage) {
  const open = `<!-- quickstart:${name} -->`;
  const close = `<!-- /quickstart:${name} -->`;
  const readme = path.join(REPO_DIR, 'README.md');
  const candidates = [readme, path.join(REPO_DIR, docsPage)];
  for (const file of candidates) {
    if (!fs.existsSync(file)) continue;
    const text = fs.readFileSync(file, 'utf8');
    const start = text.indexOf(open);
    if (start < 0) continue;
    const end = text.indexOf(close, start);
    if (end < 0) throw new Error(`${file}: ${open} has no ${close}`);
    const section = text.slice(start + open.length, end);
    const block = section.match(/```ya?ml\n([\s\S]*?)```/);
    // Markers placed in the README but the snippet not moved in yet: use the docs page.
    if (!block && file === readme && section.trim() === '') continue;
    if (!block) throw new Error(`${file}: the ${name} quick start has no yaml code block`);
    return { file, yaml: block[1] };
  }
  throw new Error(`no ${open} section in ${candidates.join(' or ')}`);
}

/** `${{ vars.X }}`-style expressions in `with:` and `env:` values, from the given contexts. */
function evaluateExpressions(value, contexts) {
  return String(value).replace(/\$\{\{\s*([\w.-]+)\s*\}\}/g, (match, expression) => {
    const [context, ...rest] = expression.split('.');
    if (!(context in contexts)) throw new Error(`harness cannot evaluate ${match}`);
    const found = rest.reduce((object, part) => (object ? object[part] : undefined), contexts[context]);
    return found === undefined ? '' : String(found);
  });
}

/** A step's `if:`, for the status functions the quick starts use. */
function stepShouldRun(condition, status) {
  const text = (condition || 'success()').replace(/^\$\{\{\s*|\s*\}\}$/g, '').trim();
  const known = {
    'success()': status === 'success',
    'failure()': status === 'failure',
    'always()': true,
    '!cancelled()': status !== 'cancelled',
    'cancelled()': status === 'cancelled',
  };
  if (!(text in known)) throw new Error(`harness cannot evaluate if: ${condition}`);
  return known[text];
}

/**
 * Runs a workflow's jobs in `needs` order, each on a fresh runner: `uses:` of
 * this action (any ref of ferry-ci/ferry/action) through main and post,
 * `actions/checkout` as a copy of `checkout`, `run:` steps in bash. `jobEnv(name)` adds what
 * the runner gives that job alone (its runtime token). Returns
 * { [job]: { job, steps: [{ step, result }], posts } }.
 */
function runWorkflow(workflow, { runId, checkout, vars = {}, secrets = {}, path: searchPath, env = {}, jobEnv: jobEnvOf = () => ({}) }) {
  const jobs = workflow.jobs || {};
  const order = [];
  const needsOf = (name) => [].concat(jobs[name].needs || []);
  while (order.length < Object.keys(jobs).length) {
    const ready = Object.keys(jobs).filter((name) => !order.includes(name) && needsOf(name).every((n) => order.includes(n)));
    if (ready.length === 0) throw new Error('workflow needs form a cycle');
    order.push(ready[0]);
  }
  const results = {};
  for (const name of order) {
    const contexts = { vars, secrets, env: {} };
    const workflowEnv = {};
    for (const [key, value] of Object.entries(workflow.env || {})) workflowEnv[key] = evaluateExpressions(value, contexts);
    contexts.env = workflowEnv;
    const jobEnv = { ...workflowEnv };
    for (const [key, value] of Object.entries(jobs[name].env || {})) jobEnv[key] = evaluateExpressions(value, contexts);
    const job = new Job({ name, runId, path: searchPath, env: { ...jobEnv, ...env, ...jobEnvOf(name) } });
    const steps = [];
    for (const step of jobs[name].steps || []) {
      if (!stepShouldRun(step.if, job.status)) {
        steps.push({ step, result: null });
        continue;
      }
      let result;
      if (step.uses && /^actions\/checkout@/.test(step.uses)) {
        fs.cpSync(checkout, job.workspace, { recursive: true });
        result = { code: 0 };
      } else if (step.uses && /^ferry-ci\/ferry\/action@/.test(step.uses)) {
        const inputs = {};
        for (const [key, value] of Object.entries(step.with || {})) inputs[key] = evaluateExpressions(value, { ...contexts, env: job.env });
        result = job.uses(inputs);
      } else if (step.run !== undefined) {
        result = job.run(step.run);
      } else {
        throw new Error(`harness does not run step ${JSON.stringify(step)}`);
      }
      steps.push({ step, result });
    }
    const posts = job.complete();
    results[name] = { job, steps, posts };
  }
  return results;
}

/** A throw-away local store, shared by the jobs of a test the way a bucket is. */
function tempStore() {
  return mkdtemp('ferry-action-store-');
}

function newRunId() {
  return String(1000000 + Math.floor(Math.random() * 8999999));
}

module.exports = {
  ACTION_DIR,
  Job,
  REPO_DIR,
  actionMetadata,
  inputEnvName,
  loadYaml,
  newRunId,
  parseFileCommands,
  quickstart,
  runWorkflow,
  tempStore,
};
