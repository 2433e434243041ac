// The world of ferry ui's browser tests: a store of their own (a local folder, or a fresh
// prefix on the server named by FERRY_TEST_STORE, read from .ci/cache/store-<name>.env),
// the real ferry binary to fill it, `ferry ui` processes, and headless Chromium driven by
// playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const storeName = process.env.FERRY_TEST_STORE || 'local';
export const outputDir = path.join(here, 'output', storeName);
export const PROJECT = 'acme/app';

export function ferryBin() {
  if (process.env.FERRY_BIN) return process.env.FERRY_BIN;
  const built = path.join(repoRoot, 'target', 'debug', 'ferry');
  if (fs.existsSync(built)) return built;
  return 'ferry';
}

/** The variables of a server store (`export NAME='value'` lines). */
function serverEnv(name) {
  const file = path.join(repoRoot, '.ci', 'cache', `store-${name}.env`);
  if (!fs.existsSync(file)) {
    throw new Error(`FERRY_TEST_STORE=${name} but ${file} is missing; start the servers with .ci/servers.sh start`);
  }
  const env = {};
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (!line || line.startsWith('#') || !line.includes('=')) continue;
    const i = line.indexOf('=');
    env[line.slice(0, i)] = line.slice(i + 1).replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
  }
  return env;
}

/** A clean environment: nothing of an enclosing CI job leaks into ferry. */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(GITHUB_|RUNNER_|CIRCLE|FERRY_|ACTIONS_|INPUT_|STATE_)/.test(k)) continue;
    if (k === 'GITHUB_ACTIONS' || k === 'CIRCLECI' || k === 'CI') continue;
    env[k] = v;
  }
  return env;
}

/** One store of the tests, with a home, state and work folder. */
export class World {
  constructor(label) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), `ferry-ui-${label}-`));
    this.work = path.join(this.root, 'work');
    fs.mkdirSync(this.work, { recursive: true });
    this.env = { ...cleanEnv(), HOME: path.join(this.root, 'home'), XDG_STATE_HOME: path.join(this.root, 'state') };
    fs.mkdirSync(this.env.HOME, { recursive: true });
    if (storeName === 'local') {
      this.store = path.join(this.root, 'store');
      this.localStore = this.store;
    } else {
      const server = serverEnv(storeName);
      const base = server.FERRY_STORE.replace(/\/+$/, '');
      delete server.FERRY_STORE;
      Object.assign(this.env, server);
      this.store = `${base}/ui-${label}-${randomBytes(4).toString('hex')}`;
      this.localStore = null;
    }
    this.env.FERRY_STORE = this.store;
    this.env.FERRY_PROJECT = PROJECT;
    this.env.FERRY_NO_PROGRESS = '1';
  }

  /** Runs ferry in the work folder; returns stdout. Throws on a non-zero exit. */
  ferry(args, { env = {}, cwd = this.work } = {}) {
    return execFileSync(ferryBin(), args, {
      cwd,
      env: { ...this.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /** Runs ferry expecting failure; returns { status, stderr }. */
  ferryFails(args, opts = {}) {
    try {
      this.ferry(args, opts);
    } catch (e) {
      return { status: e.status, stderr: String(e.stderr) };
    }
    throw new Error(`ferry ${args.join(' ')} succeeded, expected a failure`);
  }

  json(args, opts) {
    return JSON.parse(this.ferry([...args, '--json'], opts));
  }

  /** Writes files below the work folder: { 'a/b.txt': 'text' or Buffer }. */
  write(files) {
    for (const [rel, content] of Object.entries(files)) {
      const p = path.join(this.work, rel);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content);
    }
  }

  /** Starts `ferry ui` with `args`; resolves to { url, stop } once it prints its URL. */
  startUi(args = [], extraEnv = {}) {
    const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
    const proc = spawn(ferryBin(), ['ui', ...listen, ...args], {
      cwd: this.work,
      env: { ...this.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d) => { stderr += d; });
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        proc.kill('SIGTERM');
        reject(new Error(`ferry ui printed no URL within 30s; stderr: ${stderr}`));
      }, 30000);
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`ferry ui exited (${code}) before printing its URL; stderr: ${stderr}`));
      });
      proc.stdout.on('data', (d) => {
        out += d;
        const line = out.split('\n')[0];
        if (out.includes('\n')) {
          clearTimeout(timer);
          proc.removeAllListeners('exit');
          resolve({
            url: line.trim(),
            stderr: () => stderr,
            stop: () => new Promise((done) => {
              if (proc.exitCode !== null) return done(proc.exitCode);
              proc.on('exit', (c) => done(c));
              proc.kill('SIGTERM');
            }),
          });
        }
      });
    });
  }

  cleanup() {
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** ferry's encoding of a key or path into an object-name part (docs/FORMAT.md, "Names"). */
export function encodePart(s) {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9_-]/.test(c) ? c : '=' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** The object name of a key: its encoding (keys here are short: never cut), `.`, 16 hex. */
export function objectName(key) {
  return `${encodePart(key)}.${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/**
 * Writes `count` cache entries straight into a local store in the layout of docs/FORMAT.md
 * (a manifest and a small data object each, used markers for every tenth): filling 10,000
 * through `ferry cache save` would take minutes, and the page reads them the same way.
 */
export function writeCaches(storeDir, project, count) {
  const dir = path.join(storeDir, 'ferry-v1', encodePart(project), 'caches');
  for (const sub of ['keys', 'data', 'used']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const key = `v1-bulk-${['linux', 'macos', 'windows'][i % 3]}-${String(i).padStart(5, '0')}`;
    const data = randomBytes(64 + (i % 50) * 20);
    const id = randomBytes(16).toString('hex');
    const dataPath = `ferry-v1/${encodePart(project)}/caches/data/${id}.tar.zst`;
    fs.writeFileSync(path.join(storeDir, dataPath), data);
    const created = new Date(now - (count - i) * 60000);
    const manifest = {
      format: 1,
      kind: 'cache',
      created: created.toISOString(),
      expires: new Date(created.getTime() + 15 * 86400000).toISOString(),
      data: { path: dataPath, size: data.length, sha256: createHash('sha256').update(data).digest('hex') },
      encoding: 'tar',
      key,
      compression: 'zstd',
      paths: ['deps'],
      links_out: [],
      files: 1 + (i % 7),
      unpacked_bytes: data.length * 3,
      ttl_seconds: 15 * 86400,
    };
    const name = objectName(key);
    const mpath = path.join(dir, 'keys', `${name}.json`);
    fs.writeFileSync(mpath, JSON.stringify(manifest, null, 2));
    fs.utimesSync(mpath, created, created);
    if (i % 10 === 0) {
      const used = new Date(created.getTime() + 3600000);
      fs.writeFileSync(path.join(dir, 'used', `${name}.json`), JSON.stringify({
        key, last_used: used.toISOString(), expires: new Date(used.getTime() + 15 * 86400000).toISOString(),
      }));
    }
  }
}

/** Headless Chromium as this machine has it (Debian's package; no download). */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
}

export async function screenshot(page, name) {
  fs.mkdirSync(outputDir, { recursive: true });
  await page.screenshot({ path: path.join(outputDir, `${name}.png`), fullPage: true });
}
