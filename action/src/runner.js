'use strict';
// The GitHub Actions runner protocol, as @actions/core speaks it, on Node's
// standard library only: inputs from INPUT_* variables, outputs and state
// through the files the runner names, workflow commands for the log.

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** The runner exports `INPUT_<NAME>`: upper-cased, spaces as `_`, dashes kept. */
function inputEnvName(name) {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

/** A trimmed input; '' when unset. */
function getInput(name, { required = false } = {}) {
  const value = (process.env[inputEnvName(name)] || '').trim();
  if (required && value === '') {
    throw new Error(`input required and not supplied: ${name}`);
  }
  return value;
}

/** One entry a line, trimmed, blank lines dropped (as actions/cache reads `path`). */
function getMultilineInput(name, options) {
  return getInput(name, options)
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/** YAML 1.2 core-schema booleans, as @actions/core accepts them; '' is false. */
function getBooleanInput(name) {
  const value = getInput(name);
  if (['true', 'True', 'TRUE'].includes(value)) return true;
  if (['false', 'False', 'FALSE', ''].includes(value)) return false;
  throw new TypeError(`input ${name} must be true or false, not ${JSON.stringify(value)}`);
}

/** Appends `name<<DELIM\nvalue\nDELIM` to the file the runner named in `fileVar`. */
function appendFileCommand(fileVar, name, value) {
  const file = process.env[fileVar];
  if (!file) {
    throw new Error(`${fileVar} is not set: this must run as a step of a GitHub Actions job`);
  }
  const text = String(value);
  const delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  if (name.includes(delimiter) || text.includes(delimiter)) {
    throw new Error(`value of ${name} contains the delimiter ${delimiter}`);
  }
  fs.appendFileSync(file, `${name}<<${delimiter}${os.EOL}${text}${os.EOL}${delimiter}${os.EOL}`);
}

function setOutput(name, value) {
  appendFileCommand('GITHUB_OUTPUT', name, value);
}

/** State for the post step, which the runner hands back as `STATE_<name>`. */
function saveState(name, value) {
  appendFileCommand('GITHUB_STATE', name, value);
}

function getState(name) {
  return process.env[`STATE_${name}`] || '';
}

/** Puts `dir` on PATH for this process and, through GITHUB_PATH, for later steps. */
function addPath(dir) {
  if (process.env.GITHUB_PATH) {
    fs.appendFileSync(process.env.GITHUB_PATH, `${dir}${os.EOL}`);
  }
  process.env.PATH = `${dir}${path.delimiter}${process.env.PATH || ''}`;
}

function escapeData(text) {
  return String(text).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function command(name, message) {
  process.stdout.write(`::${name}::${escapeData(message)}${os.EOL}`);
}

const log = {
  info: (message) => process.stdout.write(`${message}${os.EOL}`),
  debug: (message) => command('debug', message),
  notice: (message) => command('notice', message),
  warning: (message) => command('warning', message),
  error: (message) => command('error', message),
  group: (title) => process.stdout.write(`::group::${escapeData(title)}${os.EOL}`),
  endGroup: () => process.stdout.write(`::endgroup::${os.EOL}`),
};

/** Reports `message` as the step's error and makes the step fail. */
function setFailed(message) {
  log.error(message);
  process.exitCode = 1;
}

module.exports = {
  addPath,
  getBooleanInput,
  getInput,
  getMultilineInput,
  getState,
  inputEnvName,
  log,
  saveState,
  setFailed,
  setOutput,
};
