'use strict';
// Finds the ferry binary: the one on PATH if there is one, else the release
// archive for this runner's OS and architecture, downloaded once per version
// into the runner's tool cache and checked against its published SHA-256.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');

const { fileFromTarGz, fileFromZip } = require('./archive');
const { addPath, log } = require('./runner');

/** The action's own version: the ferry release it downloads unless told otherwise. */
const ACTION_VERSION = require('../package.json').version;

const EXE = process.platform === 'win32' ? 'ferry.exe' : 'ferry';

/** The first `ferry` on PATH, as the shell would find it, or null. */
function findOnPath(env = process.env) {
  const extensions =
    process.platform === 'win32' ? (env.PATHEXT || '.EXE').split(';').filter(Boolean) : [''];
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    if (dir === '') continue;
    for (const ext of extensions) {
      const candidate = path.join(dir, `ferry${ext.toLowerCase()}`);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        if (fs.statSync(candidate).isFile()) return candidate;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/**
 * The release asset for a runner, named by the Rust target triple it was built for.
 * `runnerOs`/`runnerArch` are RUNNER_OS/RUNNER_ARCH values (Linux/macOS/Windows, X64/ARM64).
 */
function assetName(runnerOs, runnerArch) {
  const arch = { X64: 'x86_64', ARM64: 'aarch64' }[runnerArch];
  if (runnerOs === 'Linux' && arch) return `ferry-${arch}-unknown-linux-musl.tar.gz`;
  if (runnerOs === 'macOS' && arch) return `ferry-${arch}-apple-darwin.tar.gz`;
  // Windows on ARM64 runs x86_64 binaries under emulation.
  if (runnerOs === 'Windows' && arch) return 'ferry-x86_64-pc-windows-msvc.zip';
  throw new Error(
    `no ferry release for runner OS ${runnerOs} and architecture ${runnerArch}: ` +
      'put a ferry binary on PATH before this step',
  );
}

function runnerPlatform(env = process.env) {
  const runnerOs =
    env.RUNNER_OS || { linux: 'Linux', darwin: 'macOS', win32: 'Windows' }[process.platform];
  const runnerArch = env.RUNNER_ARCH || { x64: 'X64', arm64: 'ARM64' }[process.arch];
  return { runnerOs, runnerArch };
}

/** `0.1.0`, `v0.1.0` -> `0.1.0`; `latest` stays. */
function normalizeVersion(version) {
  const v = (version || ACTION_VERSION).trim();
  return v === 'latest' ? v : v.replace(/^v/, '');
}

function releaseUrl(releasesUrl, version, asset) {
  const base = releasesUrl.replace(/\/+$/, '');
  return version === 'latest'
    ? `${base}/latest/download/${asset}`
    : `${base}/download/v${version}/${asset}`;
}

function getOnce(url, timeoutMs) {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : http;
    const request = client.get(url, { headers: { 'User-Agent': 'ferry-action' } }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode,
          location: response.headers.location,
          body: Buffer.concat(chunks),
        }),
      );
      response.on('error', reject);
    });
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

/** GETs `url`, following redirects and retrying network errors and 5xx a few times. */
async function download(url, { attempts = 3, timeoutMs = 120000 } = {}) {
  let lastError;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      let current = url;
      for (let hops = 0; hops < 10; hops++) {
        const response = await getOnce(current, timeoutMs);
        if ([301, 302, 303, 307, 308].includes(response.status) && response.location) {
          current = new URL(response.location, current).toString();
          continue;
        }
        if (response.status === 200) return response.body;
        const error = new Error(`failed to download ${url}: HTTP ${response.status}`);
        if (response.status < 500) throw Object.assign(error, { final: true });
        throw error;
      }
      throw Object.assign(new Error(`failed to download ${url}: too many redirects`), { final: true });
    } catch (error) {
      lastError = error;
      if (error.final) break;
      if (attempt < attempts) {
        log.warning(`${error.message}; retrying (${attempt}/${attempts - 1})`);
        await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** attempt));
      }
    }
  }
  throw lastError;
}

/**
 * The path of a ferry binary to run: PATH's if present, else the release for
 * this runner, downloaded and verified. A downloaded binary's folder is added
 * to PATH for later steps.
 */
async function ensureFerry({ version, releasesUrl, env = process.env }) {
  const onPath = findOnPath(env);
  if (onPath) {
    log.info(`Using ferry from PATH: ${onPath}`);
    return onPath;
  }
  const wanted = normalizeVersion(version);
  const { runnerOs, runnerArch } = runnerPlatform(env);
  const asset = assetName(runnerOs, runnerArch);
  const toolRoot = env.RUNNER_TOOL_CACHE || env.RUNNER_TEMP || os.tmpdir();
  const dir = path.join(toolRoot, 'ferry', wanted, (runnerArch || process.arch).toLowerCase());
  const binary = path.join(dir, asset.endsWith('.zip') ? 'ferry.exe' : 'ferry');
  if (wanted !== 'latest' && fs.existsSync(binary)) {
    log.info(`Using cached ferry ${wanted}: ${binary}`);
    addPath(dir);
    return binary;
  }

  const url = releaseUrl(releasesUrl, wanted, asset);
  log.info(`Downloading ferry ${wanted} from ${url}`);
  const archive = await download(url);
  const sums = (await download(`${url}.sha256`)).toString('utf8').trim().split(/\s+/)[0];
  const actual = crypto.createHash('sha256').update(archive).digest('hex');
  if (!/^[0-9a-f]{64}$/i.test(sums) || sums.toLowerCase() !== actual) {
    throw new Error(
      `checksum mismatch for ${url}: expected ${sums || '(empty .sha256 file)'}, got ${actual}; ` +
        'the download is corrupt or the release was changed',
    );
  }
  const isBinary = (name) => ['ferry', 'ferry.exe'].includes(name.split('/').pop());
  const contents = asset.endsWith('.zip')
    ? fileFromZip(archive, isBinary)
    : fileFromTarGz(archive, isBinary);
  if (!contents) throw new Error(`${asset} from ${url} contains no ferry binary`);

  fs.mkdirSync(dir, { recursive: true });
  const temporary = `${binary}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, contents, { mode: 0o755 });
  fs.renameSync(temporary, binary);
  log.info(`Installed ferry ${wanted} to ${binary}`);
  addPath(dir);
  return binary;
}

module.exports = {
  ACTION_VERSION,
  EXE,
  assetName,
  download,
  ensureFerry,
  findOnPath,
  normalizeVersion,
  releaseUrl,
};
