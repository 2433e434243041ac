'use strict';
// Getting ferry when it is not on PATH: the release archive for the runner's OS
// and architecture, from a local stand-in for GitHub releases, verified, cached
// in the tool cache and put on PATH for later steps.

const assert = require('node:assert/strict');
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, it } = require('node:test');

const { fileFromTarGz } = require('../src/archive');
const { ACTION_VERSION, assetName, findOnPath, normalizeVersion, proxyFor, releaseUrl } = require('../src/install');
const { ACTION_DIR, Job, REPO_DIR, newRunId, tempStore } = require('./harness');

function ran(result) {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

const realFerry = findOnPath();
const asset = assetName(
  { linux: 'Linux', darwin: 'macOS', win32: 'Windows' }[process.platform],
  { x64: 'X64', arm64: 'ARM64' }[process.arch],
);
// A PATH with the usual system tools and no ferry.
const bareEnvPath = ['/usr/local/sbin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']
  .filter((dir) => !fs.existsSync(path.join(dir, 'ferry')))
  .join(path.delimiter);

describe('release asset names', () => {
  it('match what release.yml publishes, for every runner ferry supports', () => {
    assert.equal(assetName('Linux', 'X64'), 'ferry-x86_64-unknown-linux-musl.tar.gz');
    assert.equal(assetName('Linux', 'ARM64'), 'ferry-aarch64-unknown-linux-musl.tar.gz');
    assert.equal(assetName('macOS', 'X64'), 'ferry-x86_64-apple-darwin.tar.gz');
    assert.equal(assetName('macOS', 'ARM64'), 'ferry-aarch64-apple-darwin.tar.gz');
    assert.throws(() => assetName('Linux', 'ARM'), /no ferry release for runner OS Linux and architecture ARM/);
    const release = fs.readFileSync(path.join(REPO_DIR, '.github/workflows/release.yml'), 'utf8');
    const built = [...release.matchAll(/^\s*- target: (\S+)$/gm)].map((m) => m[1]).sort();
    assert.deepEqual(built, [
      'aarch64-apple-darwin',
      'aarch64-unknown-linux-musl',
      'x86_64-apple-darwin',
      'x86_64-unknown-linux-musl',
    ]);
    for (const target of built) {
      assert.ok(release.includes(`ferry-${target}.tar.gz`), `release.yml checks the ${target} asset`);
    }
  });

  it('offer nothing for Windows, which is not built', () => {
    for (const arch of ['X64', 'ARM64']) {
      assert.throws(() => assetName('Windows', arch), /Linux and macOS only.*Run this job on a Linux or macOS runner/);
    }
    const release = fs.readFileSync(path.join(REPO_DIR, '.github/workflows/release.yml'), 'utf8');
    assert.doesNotMatch(release, /windows-\d|msvc|\.zip|\.exe/i);
  });

  it('are downloaded from the pinned tag, the action version by default', () => {
    const base = 'https://github.com/ferry-ci/ferry/releases';
    assert.equal(normalizeVersion(''), ACTION_VERSION);
    assert.equal(normalizeVersion('v1.2.3'), '1.2.3');
    assert.equal(releaseUrl(base, '1.2.3', 'a.tar.gz'), `${base}/download/v1.2.3/a.tar.gz`);
    assert.equal(releaseUrl(`${base}/`, 'latest', 'a.tar.gz'), `${base}/latest/download/a.tar.gz`);
  });

  it('the action version is the workspace version of the ferry crates', () => {
    const cargo = fs.readFileSync(path.join(REPO_DIR, 'Cargo.toml'), 'utf8');
    const version = cargo.match(/\[workspace\.package\][^[]*?\nversion\s*=\s*"([^"]+)"/);
    assert.ok(version, 'Cargo.toml has [workspace.package] version');
    assert.equal(ACTION_VERSION, version[1]);
  });
});

describe('archive readers', () => {
  it('find the binary in a tar.gz made by tar, under a folder and with a long name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-tar-'));
    const long = `ferry-${'x'.repeat(120)}`;
    fs.mkdirSync(path.join(dir, long));
    fs.writeFileSync(path.join(dir, long, 'ferry'), 'binary bytes');
    fs.writeFileSync(path.join(dir, long, 'README.md'), 'readme');
    execFileSync('tar', ['-czf', path.join(dir, 'a.tar.gz'), '-C', dir, long]);
    const archive = fs.readFileSync(path.join(dir, 'a.tar.gz'));
    assert.equal(fileFromTarGz(archive, (name) => name.endsWith('/ferry')).toString(), 'binary bytes');
    assert.equal(fileFromTarGz(archive, (name) => name.endsWith('/nope')), null);
  });
});

describe('download when ferry is not on PATH', () => {
  let server;
  let port;
  let releases;
  let requestLog;

  function publish(tag, { corruptChecksum = false } = {}) {
    const dir = path.join(releases, tag);
    const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-release-'));
    fs.copyFileSync(realFerry, path.join(staging, 'ferry'));
    fs.chmodSync(path.join(staging, 'ferry'), 0o755);
    fs.mkdirSync(dir, { recursive: true });
    const archive = path.join(dir, asset);
    execFileSync('tar', ['-czf', archive, '-C', staging, 'ferry']);
    const digest = corruptChecksum
      ? '0'.repeat(64)
      : crypto.createHash('sha256').update(fs.readFileSync(archive)).digest('hex');
    fs.writeFileSync(`${archive}.sha256`, `${digest}  ${asset}\n`);
  }

  function requests() {
    return fs.readFileSync(requestLog, 'utf8').split('\n').filter(Boolean);
  }

  before(async () => {
    assert.ok(realFerry, 'a ferry binary on PATH to publish');
    assert.equal(findOnPath({ PATH: bareEnvPath }), null, 'the bare PATH has no ferry');
    releases = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-releases-'));
    requestLog = path.join(releases, 'requests.log');
    fs.writeFileSync(requestLog, '');
    publish(`v${ACTION_VERSION}`);
    publish('latest');
    publish('v9.9.9', { corruptChecksum: true });
    server = spawn(process.execPath, [path.join(__dirname, 'fixtures/release-server.js'), releases, requestLog], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    port = await new Promise((resolve, reject) => {
      server.stdout.once('data', (data) => resolve(Number(String(data).trim())));
      server.once('exit', (code) => reject(new Error(`release server exited with ${code}`)));
    });
  });

  after(() => {
    if (server) server.kill('SIGTERM');
  });

  function job(toolCache) {
    const env = toolCache ? { RUNNER_TOOL_CACHE: toolCache } : {};
    return new Job({ name: 'build', runId: newRunId(), path: bareEnvPath, env });
  }

  it('downloads the pinned release, verifies it, caches it and puts it on PATH', () => {
    const first = job();
    const inputs = {
      command: 'cache-restore',
      key: 'nothing-here',
      store: tempStore(),
      'releases-url': `http://127.0.0.1:${port}/releases`,
    };
    const main = first.uses(inputs);
    assert.equal(main.code, 0, ran(main));
    const installed = path.join(first.toolCache, 'ferry', ACTION_VERSION, first.env.RUNNER_ARCH.toLowerCase(), 'ferry');
    assert.equal(main.outputs['ferry-path'], installed);
    assert.deepEqual(main.addedPath, [path.dirname(installed)]);
    assert.equal(main.outputs['cache-hit'], 'false');
    assert.ok(requests().includes(`/releases/download/v${ACTION_VERSION}/${asset}`));
    assert.ok(requests().includes(`/releases/download/v${ACTION_VERSION}/${asset}.sha256`));
    const version = spawnSync(installed, ['--version'], { encoding: 'utf8' });
    assert.equal(version.status, 0, version.stderr);

    // A later step of the job finds it on PATH (GITHUB_PATH) and downloads nothing.
    const before = requests().length;
    const second = first.uses(inputs);
    assert.equal(second.code, 0, ran(second));
    assert.match(second.stdout, /Using ferry from PATH/);
    assert.equal(requests().length, before);

    // Another job on a runner with the same tool cache reuses the download.
    const third = job(first.toolCache).uses(inputs);
    assert.equal(third.code, 0, ran(third));
    assert.match(third.stdout, /Using cached ferry/);
    assert.equal(requests().length, before);
  });

  it('downloads "latest" from the latest release', () => {
    const main = job().uses({
      command: 'cache-restore',
      key: 'k',
      store: tempStore(),
      version: 'latest',
      'releases-url': `http://127.0.0.1:${port}/releases`,
    });
    assert.equal(main.code, 0, ran(main));
    assert.ok(requests().includes(`/releases/latest/download/${asset}`));
  });

  it('refuses an archive whose checksum does not match', () => {
    const runner = job();
    const main = runner.uses({
      command: 'cache-restore',
      key: 'k',
      version: 'v9.9.9',
      'releases-url': `http://127.0.0.1:${port}/releases`,
    });
    assert.equal(main.code, 1, ran(main));
    assert.match(main.stdout, /::error::checksum mismatch for http:\/\/127\.0\.0\.1:\d+\/releases\/download\/v9\.9\.9\//);
    assert.equal(fs.existsSync(path.join(runner.toolCache, 'ferry', '9.9.9')), false);
  });

  it('names the URL when the version has no release', () => {
    const main = job().uses({
      command: 'cache-restore',
      key: 'k',
      version: '0.0.0-nope',
      'releases-url': `http://127.0.0.1:${port}/releases`,
    });
    assert.equal(main.code, 1, ran(main));
    assert.match(main.stdout, /::error::failed to download http:.*\/download\/v0\.0\.0-nope\/ferry-.*: HTTP 404/);
  });
});

describe('a Windows runner', () => {
  it('fails the step saying ferry runs on Linux and macOS, even with a ferry on PATH', () => {
    const job = new Job({ name: 'build', runId: newRunId(), env: { RUNNER_OS: 'Windows' } });
    const main = job.uses({ command: 'cache-restore', key: 'k', store: tempStore() });
    assert.equal(main.code, 1, ran(main));
    assert.match(main.stdout, /::error::ferry is built for Linux and macOS only/);
    assert.match(main.stdout, /runs-on: ubuntu-latest or macos-latest/);
  });
});

describe('proxy selection, as @actions/http-client makes it', () => {
  const url = 'https://github.com/ferry-ci/ferry/releases/download/v1/a.tar.gz';
  const pick = (target, env) => {
    const proxy = proxyFor(target, env);
    return proxy ? proxy.href : null;
  };

  it('uses https_proxy (before HTTPS_PROXY) for https and http_proxy for http', () => {
    assert.equal(pick(url, { HTTPS_PROXY: 'http://upper:3128' }), 'http://upper:3128/');
    assert.equal(pick(url, { https_proxy: 'http://lower:3128', HTTPS_PROXY: 'http://upper:3128' }), 'http://lower:3128/');
    assert.equal(pick(url, { HTTP_PROXY: 'http://plain:3128' }), null);
    assert.equal(pick('http://example.com/a', { HTTP_PROXY: 'http://plain:3128' }), 'http://plain:3128/');
    assert.equal(pick(url, {}), null);
    assert.equal(pick(url, { HTTPS_PROXY: 'proxy.corp:3128' }), 'http://proxy.corp:3128/');
  });

  it('skips the proxy for NO_PROXY hosts, domains, host:port, * and loopback', () => {
    const env = (noProxy) => ({ HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: noProxy });
    assert.equal(pick(url, env('github.com')), null);
    assert.equal(pick('https://api.github.com/x', env('github.com')), null);
    assert.equal(pick('https://api.github.com/x', env('.github.com')), null);
    assert.equal(pick(url, env('GITHUB.COM:443')), null);
    assert.equal(pick(url, env('github.com:8443')), 'http://proxy:3128/');
    assert.equal(pick(url, env('other.org, *')), null);
    assert.equal(pick('https://notgithub.com/x', env('github.com')), 'http://proxy:3128/');
    assert.equal(pick(url, { HTTPS_PROXY: 'http://proxy:3128', no_proxy: 'github.com', NO_PROXY: 'x.org' }), null);
    for (const host of ['localhost', '127.0.0.1', '[::1]']) {
      assert.equal(pick(`https://${host}:8080/x`, { HTTPS_PROXY: 'http://proxy:3128' }), null, host);
    }
  });
});

describe('download through a proxy (self-hosted runners)', () => {
  const HOST = 'releases.example.test';
  let work;
  let servers = [];
  let tlsPort;
  let plainPort;
  let certificate;

  function start(script, args, env = {}) {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', script), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    servers.push(child);
    return new Promise((resolve, reject) => {
      child.stdout.once('data', (data) => resolve(Number(String(data).trim())));
      child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
    });
  }

  async function proxy(env = {}) {
    const log = path.join(work, `proxy-${servers.length}.log`);
    fs.writeFileSync(log, '');
    const port = await start('connect-proxy.js', [log], env);
    const seen = () => fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
    return { port, seen };
  }

  before(async () => {
    assert.ok(realFerry, 'a ferry binary on PATH to publish');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-proxy-'));
    const releases = path.join(work, 'releases');
    const staging = path.join(work, 'staging');
    fs.mkdirSync(path.join(releases, `v${ACTION_VERSION}`), { recursive: true });
    fs.mkdirSync(staging);
    fs.copyFileSync(realFerry, path.join(staging, 'ferry'));
    fs.chmodSync(path.join(staging, 'ferry'), 0o755);
    const archive = path.join(releases, `v${ACTION_VERSION}`, asset);
    execFileSync('tar', ['-czf', archive, '-C', staging, 'ferry']);
    const digest = crypto.createHash('sha256').update(fs.readFileSync(archive)).digest('hex');
    fs.writeFileSync(`${archive}.sha256`, `${digest}  ${asset}\n`);
    // A certificate for the release host, trusted by the action through NODE_EXTRA_CA_CERTS.
    certificate = path.join(work, 'cert.pem');
    const key = path.join(work, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', certificate, '-days', '1',
      '-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST}`,
    ], { stdio: 'ignore' });
    fs.writeFileSync(path.join(work, 'requests.log'), '');
    tlsPort = await start('release-server.js', [releases, path.join(work, 'requests.log'), certificate, key]);
    plainPort = await start('release-server.js', [releases, path.join(work, 'requests.log')]);
  });

  after(() => {
    for (const server of servers) server.kill('SIGTERM');
  });

  function install(env, releasesUrl, { trust = true } = {}) {
    const extra = trust ? { NODE_EXTRA_CA_CERTS: certificate } : {};
    const job = new Job({ name: 'build', runId: newRunId(), path: bareEnvPath, env: { ...extra, ...env } });
    return job.uses({ command: 'cache-restore', key: 'k', store: tempStore(), 'releases-url': releasesUrl });
  }

  it('tunnels HTTPS downloads through HTTPS_PROXY with CONNECT and checks the server certificate', async () => {
    const { port, seen } = await proxy();
    const main = install({ HTTPS_PROXY: `http://127.0.0.1:${port}` }, `https://${HOST}:${tlsPort}/releases`);
    assert.equal(main.code, 0, ran(main));
    assert.match(main.stdout, new RegExp(`through proxy http://127\\.0\\.0\\.1:${port}`));
    const requests = seen();
    assert.ok(requests.length >= 2, JSON.stringify(requests));
    for (const request of requests) assert.deepEqual(request, { method: 'CONNECT', target: `${HOST}:${tlsPort}`, auth: null });

    // The tunnel carries TLS to the release host itself: a certificate nobody vouches for fails.
    const untrusted = install({ HTTPS_PROXY: `http://127.0.0.1:${port}` }, `https://${HOST}:${tlsPort}/releases`, { trust: false });
    assert.equal(untrusted.code, 1, ran(untrusted));
    assert.match(untrusted.stdout, /::error::.*(self[- ]signed|certificate)/i);
  });

  it('sends the proxy URL\'s credentials, and a refusal names the proxy but not them', async () => {
    const { port, seen } = await proxy({ PROXY_USER: 'ci:s3cret pass' });
    const good = install({ https_proxy: `http://ci:s3cret%20pass@127.0.0.1:${port}` }, `https://${HOST}:${tlsPort}/releases`);
    assert.equal(good.code, 0, ran(good));
    assert.equal(seen()[0].auth, `Basic ${Buffer.from('ci:s3cret pass').toString('base64')}`);

    const bad = install({ https_proxy: `http://ci:wrong@127.0.0.1:${port}` }, `https://${HOST}:${tlsPort}/releases`);
    assert.equal(bad.code, 1, ran(bad));
    assert.match(bad.stdout, new RegExp(`::error::proxy http://127\\.0\\.0\\.1:${port} refused to connect to ${HOST}:${tlsPort}: HTTP 407`));
    assert.doesNotMatch(bad.stdout + bad.stderr, /wrong/);
  });

  it('tunnels plain HTTP downloads through HTTP_PROXY', async () => {
    const { port, seen } = await proxy();
    const main = install({ HTTP_PROXY: `http://127.0.0.1:${port}`, HTTPS_PROXY: 'http://127.0.0.1:9' }, `http://${HOST}:${plainPort}/releases`);
    assert.equal(main.code, 0, ran(main));
    assert.ok(seen().length >= 2);
    assert.ok(seen().every((r) => r.method === 'CONNECT' && r.target === `${HOST}:${plainPort}`), JSON.stringify(seen()));
  });

  it('goes direct for NO_PROXY hosts and loopback', async () => {
    // 0.0.0.0 reaches this machine without being loopback by name, so only NO_PROXY exempts it.
    const { port, seen } = await proxy();
    const url = `http://0.0.0.0:${plainPort}/releases`;
    const proxied = install({ HTTP_PROXY: `http://127.0.0.1:${port}` }, url);
    assert.equal(proxied.code, 0, ran(proxied));
    assert.ok(seen().length >= 2, JSON.stringify(seen()));
    const before = seen().length;

    for (const noProxy of ['0.0.0.0', `example.com, 0.0.0.0:${plainPort}`, '*']) {
      const direct = install({ HTTP_PROXY: `http://127.0.0.1:${port}`, NO_PROXY: noProxy }, url);
      assert.equal(direct.code, 0, ran(direct));
      assert.doesNotMatch(direct.stdout, /through proxy/);
    }
    const loopback = install({ HTTP_PROXY: `http://127.0.0.1:${port}` }, `http://127.0.0.1:${plainPort}/releases`);
    assert.equal(loopback.code, 0, ran(loopback));
    assert.equal(seen().length, before, JSON.stringify(seen()));
  });
});

describe('the committed JavaScript', () => {
  it('loads with no node_modules: Node standard library only', () => {
    assert.equal(fs.existsSync(path.join(ACTION_DIR, 'node_modules')), false);
    for (const file of fs.readdirSync(path.join(ACTION_DIR, 'src'))) {
      const source = fs.readFileSync(path.join(ACTION_DIR, 'src', file), 'utf8');
      for (const [, module] of source.matchAll(/require\('([^']+)'\)/g)) {
        assert.ok(
          module.startsWith('node:') || module.startsWith('./') || module === '../package.json',
          `${file} requires ${module}`,
        );
      }
    }
  });
});
