'use strict';
// Runs ferry with --json and reads back the one JSON object it prints on stdout;
// its human output (stderr) goes straight to the step log.

const { spawn } = require('node:child_process');

const { getBooleanInput, getInput, getMultilineInput, log } = require('./runner');

/** ferry's documented exit codes. */
const EXIT = { ok: 0, error: 1, usage: 2, cacheMiss: 3, workspaceConflict: 4, integrity: 5 };

/** Global flags shared by every command. */
function globalArgs() {
  const args = ['--json'];
  const store = getInput('store');
  const project = getInput('project');
  if (store) args.push('--store', store);
  if (project) args.push('--project', project);
  return args;
}

function repeat(flag, values) {
  return values.flatMap((value) => [flag, value]);
}

function optional(flag, value) {
  return value ? [flag, value] : [];
}

function required(name, command) {
  const value = getInput(name);
  if (!value) throw new Error(`input ${name} is required for command ${command}`);
  return value;
}

function requiredList(name, command) {
  const values = getMultilineInput(name);
  if (values.length === 0) throw new Error(`input ${name} is required for command ${command}`);
  return values;
}

/** `ferry cache restore` arguments from the actions/cache-style inputs. */
function cacheRestoreArgs(command) {
  const args = ['cache', 'restore', '--key', required('key', command)];
  args.push(...repeat('--restore-key', getMultilineInput('restore-keys')));
  // The paths the entry must hold: a planted entry under a guessable key cannot restore
  // anywhere else (docs/security.md).
  args.push(...repeat('--path', getMultilineInput('path')));
  if (getBooleanInput('lookup-only')) args.push('--lookup-only');
  if (getBooleanInput('fail-on-cache-miss')) args.push('--fail-on-miss');
  return args;
}

/** `ferry cache save` arguments; `key` is the template, or the key main rendered. */
function cacheSaveArgs(command, key) {
  const args = ['cache', 'save', '--key', key || required('key', command)];
  args.push(...repeat('--path', requiredList('path', command)));
  args.push(...repeat('--exclude', getMultilineInput('exclude')));
  args.push(...optional('--format', getInput('format')));
  args.push(...optional('--level', getInput('level')));
  args.push(...optional('--ttl', getInput('ttl')));
  if (getBooleanInput('force')) args.push('--force');
  return args;
}

function workspacePersistArgs(command) {
  return [
    'workspace',
    'persist',
    '--root',
    required('root', command),
    ...repeat('--path', requiredList('path', command)),
    ...optional('--workflow', getInput('workflow')),
    ...optional('--job', getInput('job')),
  ];
}

function workspaceAttachArgs() {
  return [
    'workspace',
    'attach',
    '--at',
    getInput('at') || '.',
    ...optional('--workflow', getInput('workflow')),
    ...repeat('--from', getMultilineInput('from')),
  ];
}

function artifactsUploadArgs(command) {
  const paths = requiredList('path', command);
  return [
    'artifacts',
    'upload',
    ...optional('--destination', getInput('destination')),
    ...optional('--ttl', getInput('ttl')),
    ...(getBooleanInput('overwrite') ? ['--overwrite'] : []),
    ...optional('--run', getInput('run')),
    ...optional('--job', getInput('job')),
    '--',
    ...paths,
  ];
}

function artifactsDownloadArgs() {
  const pattern = getInput('pattern');
  return [
    'artifacts',
    'download',
    '--to',
    getInput('to') || '.',
    ...optional('--run', getInput('run')),
    ...optional('--job', getInput('job')),
    ...(pattern ? ['--', pattern] : []),
  ];
}

/**
 * The JSON objects ferry printed on stdout: `result`, the command's result, and
 * `error`, the `{"error", "exit_code"}` object it prints when it fails (a
 * failing restore with --fail-on-miss prints both). Either may be null.
 */
function parseJson(stdout) {
  const objects = [];
  // Workflow commands (`::add-mask::...`) are for the runner, not results.
  const text = stdout
    .split(/\r?\n/)
    .filter((line) => !line.startsWith('::'))
    .join('\n')
    .trim();
  try {
    if (text !== '') objects.push(JSON.parse(text));
  } catch {
    for (const line of text.split(/\r?\n/)) {
      if (!line.trim().startsWith('{')) continue;
      try {
        objects.push(JSON.parse(line));
      } catch {
        // not JSON after all
      }
    }
  }
  const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);
  const found = objects.filter(isObject);
  const errors = found.filter((object) => typeof object.error === 'string');
  const results = found.filter((object) => typeof object.error !== 'string');
  return {
    result: results.length > 0 ? results[results.length - 1] : null,
    error: errors.length > 0 ? errors[errors.length - 1] : null,
  };
}

/**
 * Runs `ferry <global flags> <args>` in the working-directory input.
 * Resolves to `{ code, json, error }` (see parseJson); never rejects on a non-zero exit.
 */
function runFerry(ferry, args) {
  const argv = [...globalArgs(), ...args];
  const cwd = getInput('working-directory') || '.';
  log.info(`[command]${ferry} ${argv.map(quote).join(' ')}`);
  // The job's token for GitHub's REST API (listing and removing caches on gha://); the
  // runner gives actions ACTIONS_RESULTS_URL and ACTIONS_RUNTIME_TOKEN itself.
  const env = { ...process.env };
  const token = getInput('token');
  if (token) env.GITHUB_TOKEN = token;
  return new Promise((resolve, reject) => {
    const child = spawn(ferry, argv, { cwd, env, stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks = [];
    child.stdout.on('data', (chunk) => chunks.push(chunk));
    child.on('error', (error) => reject(new Error(`failed to run ${ferry}: ${error.message}`)));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(chunks).toString('utf8');
      // Masks ferry printed on stdout (it prints them on stderr with --json) reach the runner.
      for (const line of stdout.split(/\r?\n/)) {
        if (line.startsWith('::add-mask::')) process.stdout.write(`${line}\n`);
      }
      const { result, error } = parseJson(stdout);
      if (result === null && error === null && stdout.trim() !== '') process.stdout.write(stdout);
      resolve({ code: code === null ? 128 : code, signal, json: result, error, stdout });
    });
  });
}

function quote(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

module.exports = {
  EXIT,
  artifactsDownloadArgs,
  artifactsUploadArgs,
  cacheRestoreArgs,
  cacheSaveArgs,
  parseJson,
  runFerry,
  workspaceAttachArgs,
  workspacePersistArgs,
};
