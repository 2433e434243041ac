'use strict';
// The action's main step: restores (command `cache`, `cache-restore`) or runs
// the one ferry command named by the `command` input. For `cache` it leaves in
// $GITHUB_STATE what the post step needs to decide whether to save.

const {
  EXIT,
  artifactsDownloadArgs,
  artifactsUploadArgs,
  cacheRestoreArgs,
  cacheSaveArgs,
  runFerry,
  workspaceAttachArgs,
  workspacePersistArgs,
} = require('./ferry');
const { ensureFerry } = require('./install');
const { getInput, log, saveState, setFailed, setOutput } = require('./runner');

const DEFAULT_RELEASES_URL = 'https://github.com/ferry-ci/ferry/releases';

const COMMANDS = {
  cache: cacheRestoreArgs,
  'cache-restore': cacheRestoreArgs,
  'cache-save': (command) => cacheSaveArgs(command, ''),
  'workspace-persist': workspacePersistArgs,
  'workspace-attach': workspaceAttachArgs,
  'artifacts-upload': artifactsUploadArgs,
  'artifacts-download': artifactsDownloadArgs,
};

const EXIT_MEANING = {
  [EXIT.usage]: 'invalid arguments',
  [EXIT.workspaceConflict]: 'workspace conflict',
  [EXIT.integrity]: 'integrity check failed',
};

function failure(command, code, error) {
  const meaning = EXIT_MEANING[code] ? ` (${EXIT_MEANING[code]})` : '';
  const detail = error && error.error ? `: ${error.error}` : ' (see the log above)';
  return new Error(`ferry ${command} failed with exit code ${code}${meaning}${detail}`);
}

function reportRestore(command, code, result, error) {
  // On a miss with --fail-on-miss, ferry's one JSON object is the error, carrying the miss.
  const json = result || (error && error.key !== undefined ? error : null);
  const hit = json && json.hit ? json.hit : 'miss';
  const key = (json && json.key) || '';
  const matched = (json && json.matched_key) || '';
  setOutput('cache-hit', String(hit === 'exact'));
  setOutput('cache-primary-key', key);
  setOutput('cache-matched-key', matched);
  if (command === 'cache') {
    saveState('primary_key', key);
    saveState('hit', hit);
  }
  if (code === EXIT.cacheMiss) {
    throw new Error(
      `no cache entry matches key ${key || getInput('key')} or any of restore-keys, ` +
        'and fail-on-cache-miss is true',
    );
  }
  if (code !== EXIT.ok) throw failure('cache restore', code, error);
  const lookup = getInput('lookup-only') === 'true' ? ' (lookup only: nothing downloaded)' : '';
  if (hit === 'exact') log.info(`Cache restored from key: ${matched || key}${lookup}`);
  else if (hit === 'partial') log.info(`Cache restored from key: ${matched} (primary key ${key} missed)${lookup}`);
  else log.info(`Cache not found for key: ${key}`);
}

async function run() {
  const command = getInput('command') || 'cache';
  const argsFor = COMMANDS[command];
  if (!argsFor) {
    throw new Error(
      `unknown command ${JSON.stringify(command)}: use one of ${Object.keys(COMMANDS).join(', ')}`,
    );
  }
  saveState('command', command);
  const args = argsFor(command);
  const ferry = await ensureFerry({
    version: getInput('version'),
    releasesUrl: getInput('releases-url') || DEFAULT_RELEASES_URL,
  });
  saveState('ferry_path', ferry);
  setOutput('ferry-path', ferry);

  const { code, json, error } = await runFerry(ferry, args);
  if (json) setOutput('result', JSON.stringify(json));
  if (command === 'cache' || command === 'cache-restore') {
    reportRestore(command, code, json, error);
    if (command === 'cache') saveState('restored', 'true');
    return;
  }
  if (code !== EXIT.ok) throw failure(args.slice(0, 2).join(' '), code, error);
  if (command === 'cache-save' && json) {
    if (json.saved) log.info(`Cache saved with key: ${json.key}`);
    else if (json.reason === 'denied') log.warning(`Cache not saved with key ${json.key}: ${json.denied || 'the store refused the write'}`);
    else log.info(`Cache entry ${json.key} already exists; not saved`);
  }
}

run().catch((error) => setFailed(error.message));
