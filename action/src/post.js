'use strict';
// The action's post step, run by the runner at the end of the job. For command
// `cache` it saves the paths under the key the main step rendered, unless main
// hit that key exactly, main did not finish, or the job did not succeed (unless
// save-on-failure). A failed save is a warning, as in actions/cache: a cache is
// an optimisation and must not fail a job that succeeded.

const { cacheSaveArgs, runFerry } = require('./ferry');
const { findOnPath } = require('./install');
const { getBooleanInput, getInput, getState, log, setFailed } = require('./runner');

async function run() {
  const command = getState('command') || getInput('command') || 'cache';
  if (command !== 'cache') return;
  if (getState('restored') !== 'true') {
    log.info('Not saving the cache: the main step did not finish its restore.');
    return;
  }
  const key = getState('primary_key');
  if (getState('hit') === 'exact') {
    log.info(`Cache hit on the primary key ${key}; not saving.`);
    return;
  }
  const status = getInput('job-status');
  if (status !== '' && status !== 'success' && !getBooleanInput('save-on-failure')) {
    log.info(`Not saving the cache: the job status is ${status} (set save-on-failure: true to save anyway).`);
    return;
  }
  const ferry = getState('ferry_path') || findOnPath();
  if (!ferry) throw new Error('no ferry binary: the main step left no path and none is on PATH');

  // Save under the key main rendered, not the template rendered again: files the
  // template hashes may have changed during the job (as actions/cache does).
  const rendered = key !== '' && !key.includes('{{') ? key : '';
  const { code, json, error } = await runFerry(ferry, cacheSaveArgs('cache', rendered));
  if (code !== 0) {
    const detail = error && error.error ? `: ${error.error}` : ' (see the log above)';
    log.warning(`Failed to save the cache: ferry cache save exited with code ${code}${detail}`);
    return;
  }
  if (json && json.saved === false && json.reason === 'denied') {
    // A job that may not save caches (read-only token, ACTIONS_CACHE_MODE) is not failed.
    log.warning(`Cache not saved with key ${json.key}: ${json.denied || 'the store refused the write'}`);
  } else if (json && json.saved === false) {
    log.info(`Cache entry ${json.key} already exists (${json.reason || 'not saved'}); not saving.`);
  } else {
    log.info(`Cache saved with key: ${(json && json.key) || key}`);
  }
}

run().catch((error) => {
  if (getState('command') === 'cache' || getInput('command') === 'cache') {
    log.warning(`Failed to save the cache: ${error.message}`);
  } else {
    setFailed(error.message);
  }
});
