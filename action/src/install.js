'use strict';
// Finds the ferry binary: the one on PATH if there is one, else the release
// archive for this runner's OS and architecture, downloaded once per version
// into the runner's tool cache and checked against its published SHA-256.
// Downloads go through HTTPS_PROXY / HTTP_PROXY unless NO_PROXY exempts the
// host, as GitHub's toolkit (@actions/http-client) does on self-hosted runners.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');

const { fileFromTarGz } = require('./archive');
const { addPath, log } = require('./runner');

/** The action's own version: the ferry release it downloads unless told otherwise. */
const ACTION_VERSION = require('../package.json').version;

/** Why there is no ferry for Windows runners, and what to do instead. */
const NO_WINDOWS =
  'ferry is built for Linux and macOS only: it relies on Unix file modes and symlinks, and no ' +
  'Windows build is published. Run this job on a Linux or macOS runner ' +
  '(runs-on: ubuntu-latest or macos-latest).';

/** The first `ferry` on PATH, as the shell would find it, or null. */
function findOnPath(env = process.env) {
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'ferry');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * The release asset for a runner, named by the Rust target triple it was built for.
 * `runnerOs`/`runnerArch` are RUNNER_OS/RUNNER_ARCH values (Linux/macOS/Windows, X64/ARM64).
 */
function assetName(runnerOs, runnerArch) {
  if (runnerOs === 'Windows') throw new Error(NO_WINDOWS);
  const arch = { X64: 'x86_64', ARM64: 'aarch64' }[runnerArch];
  if (runnerOs === 'Linux' && arch) return `ferry-${arch}-unknown-linux-musl.tar.gz`;
  if (runnerOs === 'macOS' && arch) return `ferry-${arch}-apple-darwin.tar.gz`;
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

/** Loopback hosts never go through a proxy (as @actions/http-client decides). */
function isLoopback(hostname) {
  const host = hostname.toLowerCase();
  return (
    host === 'localhost' ||
    host.startsWith('127.') ||
    host.startsWith('[::1]') ||
    host.startsWith('[0:0:0:0:0:0:0:1]')
  );
}

/**
 * True when NO_PROXY (or no_proxy, which wins) exempts `target`: `*`, the host, `host:port`,
 * or a domain the host ends in (`example.com` and `.example.com` both match `a.example.com`),
 * compared without case, as @actions/http-client does.
 */
function bypassesProxy(target, env) {
  if (!target.hostname) return false;
  if (isLoopback(target.hostname)) return true;
  const noProxy = env.no_proxy || env.NO_PROXY || '';
  if (!noProxy) return false;
  const port = target.port ? Number(target.port) : { 'http:': 80, 'https:': 443 }[target.protocol];
  const hosts = [target.hostname.toUpperCase()];
  if (typeof port === 'number') hosts.push(`${hosts[0]}:${port}`);
  return noProxy
    .split(',')
    .map((item) => item.trim().toUpperCase())
    .filter(Boolean)
    .some(
      (item) =>
        item === '*' ||
        hosts.some(
          (host) => host === item || host.endsWith(`.${item}`) || (item.startsWith('.') && host.endsWith(item)),
        ),
    );
}

/**
 * The proxy to reach `url` through, or null: `https_proxy`/`HTTPS_PROXY` for https URLs,
 * `http_proxy`/`HTTP_PROXY` for http ones (lower case first), unless NO_PROXY exempts the
 * host. A value without a scheme (`proxy.corp:3128`) is taken as `http://`.
 */
function proxyFor(url, env = process.env) {
  const target = new URL(url);
  if (bypassesProxy(target, env)) return null;
  const value =
    target.protocol === 'https:' ? env.https_proxy || env.HTTPS_PROXY : env.http_proxy || env.HTTP_PROXY;
  if (!value) return null;
  let proxy;
  try {
    proxy = new URL(value);
  } catch {
    proxy = null;
  }
  if (!proxy || !['http:', 'https:'].includes(proxy.protocol) || !proxy.hostname) {
    try {
      proxy = new URL(`http://${value}`);
    } catch {
      throw new Error(`the proxy ${JSON.stringify(value)} in the environment is not a URL`);
    }
  }
  return proxy;
}

/** `http://host:port` of a proxy, for messages: never its credentials. */
function proxyLabel(proxy) {
  return `${proxy.protocol}//${proxy.host}`;
}

/**
 * A socket tunnelled to `target`'s host and port through `proxy` with HTTP CONNECT (what
 * the toolkit's `tunnel` agent does), authenticating with the proxy URL's user and password.
 */
function openTunnel(proxy, target, timeoutMs) {
  return new Promise((resolve, reject) => {
    const port = target.port || { 'http:': '80', 'https:': '443' }[target.protocol];
    const authority = `${target.hostname}:${port}`;
    const headers = { Host: authority, 'User-Agent': 'ferry-action' };
    if (proxy.username || proxy.password) {
      const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
      headers['Proxy-Authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
    }
    const client = proxy.protocol === 'https:' ? https : http;
    const request = client.request({
      host: proxy.hostname.replace(/^\[|\]$/g, ''),
      port: proxy.port || (proxy.protocol === 'https:' ? 443 : 80),
      method: 'CONNECT',
      path: authority,
      headers,
      agent: false,
    });
    request.setTimeout(timeoutMs, () =>
      request.destroy(new Error(`proxy ${proxyLabel(proxy)} did not answer CONNECT within ${timeoutMs} ms`)),
    );
    request.on('connect', (response, socket) => {
      if (response.statusCode === 200) {
        resolve(socket);
        return;
      }
      socket.destroy();
      const error = new Error(
        `proxy ${proxyLabel(proxy)} refused to connect to ${authority}: HTTP ${response.statusCode}`,
      );
      reject(Object.assign(error, { final: response.statusCode < 500 }));
    });
    request.on('error', (error) =>
      reject(new Error(`failed to reach proxy ${proxyLabel(proxy)}: ${error.message}`)),
    );
    request.end();
  });
}

async function getOnce(url, timeoutMs, env) {
  const target = new URL(url);
  const proxy = proxyFor(target, env);
  const client = target.protocol === 'https:' ? https : http;
  const options = { headers: { 'User-Agent': 'ferry-action' } };
  if (proxy) {
    const socket = await openTunnel(proxy, target, timeoutMs);
    // With no agent, the request runs on the connection this returns.
    // TLS to the server itself runs inside the tunnel, checked against the server's name.
    options.createConnection = () =>
      target.protocol === 'https:' ? tls.connect({ socket, servername: target.hostname }) : socket;
  }
  return new Promise((resolve, reject) => {
    const request = client.get(target, options, (response) => {
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
async function download(url, { attempts = 3, timeoutMs = 120000, env = process.env } = {}) {
  let lastError;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      let current = url;
      for (let hops = 0; hops < 10; hops++) {
        const response = await getOnce(current, timeoutMs, env);
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
      // A certificate that fails verification will fail the same way again.
      if (error.final || /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(error.code || '')) break;
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
  if (runnerPlatform(env).runnerOs === 'Windows') throw new Error(NO_WINDOWS);
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
  const binary = path.join(dir, 'ferry');
  if (wanted !== 'latest' && fs.existsSync(binary)) {
    log.info(`Using cached ferry ${wanted}: ${binary}`);
    addPath(dir);
    return binary;
  }

  const url = releaseUrl(releasesUrl, wanted, asset);
  const proxy = proxyFor(url, env);
  log.info(`Downloading ferry ${wanted} from ${url}${proxy ? ` through proxy ${proxyLabel(proxy)}` : ''}`);
  const archive = await download(url, { env });
  const sums = (await download(`${url}.sha256`, { env })).toString('utf8').trim().split(/\s+/)[0];
  const actual = crypto.createHash('sha256').update(archive).digest('hex');
  if (!/^[0-9a-f]{64}$/i.test(sums) || sums.toLowerCase() !== actual) {
    throw new Error(
      `checksum mismatch for ${url}: expected ${sums || '(empty .sha256 file)'}, got ${actual}; ` +
        'the download is corrupt or the release was changed',
    );
  }
  const contents = fileFromTarGz(archive, (name) => name.split('/').pop() === 'ferry');
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
  assetName,
  download,
  ensureFerry,
  findOnPath,
  normalizeVersion,
  proxyFor,
  releaseUrl,
};
