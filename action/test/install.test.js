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

const { fileFromTarGz, fileFromZip } = require('../src/archive');
const { ACTION_VERSION, assetName, findOnPath, normalizeVersion, releaseUrl } = require('../src/install');
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
    assert.equal(assetName('Windows', 'X64'), 'ferry-x86_64-pc-windows-msvc.zip');
    assert.throws(() => assetName('Linux', 'ARM'), /no ferry release for runner OS Linux and architecture ARM/);
    const release = fs.readFileSync(path.join(REPO_DIR, '.github/workflows/release.yml'), 'utf8');
    for (const target of [
      'x86_64-unknown-linux-musl',
      'aarch64-unknown-linux-musl',
      'x86_64-apple-darwin',
      'aarch64-apple-darwin',
      'x86_64-pc-windows-msvc',
    ]) {
      assert.match(release, new RegExp(`target: ${target}\\b`), `release.yml builds ${target}`);
    }
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

  it('find the binary in a deflated zip', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-action-zip-'));
    const zip = path.join(dir, 'a.zip');
    execFileSync('python3', [
      '-c',
      'import sys, zipfile\n' +
        'with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:\n' +
        '    z.writestr("README.md", "readme")\n' +
        '    z.writestr("ferry.exe", b"MZ" + b"\\x00" * 4096)\n',
      zip,
    ]);
    const contents = fileFromZip(fs.readFileSync(zip), (name) => name === 'ferry.exe');
    assert.equal(contents.length, 4098);
    assert.equal(contents.subarray(0, 2).toString(), 'MZ');
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
