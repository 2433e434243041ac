'use strict';
// Reads one file out of a release archive (.tar.gz or .zip) in memory, so the
// action needs no `tar` or `unzip` on the runner and works the same on all three OSes.

const zlib = require('node:zlib');

function cString(buf, start, length) {
  const field = buf.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? length : end).toString('utf8');
}

function tarSize(header) {
  // GNU base-256 for sizes past 8 GiB; octal otherwise.
  if (header[124] & 0x80) {
    let size = 0;
    for (let i = 125; i < 136; i++) size = size * 256 + header[i];
    return size;
  }
  const text = cString(header, 124, 12).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function paxPath(data) {
  let found = null;
  let rest = data.toString('utf8');
  while (rest.length > 0) {
    const space = rest.indexOf(' ');
    const length = parseInt(rest.slice(0, space), 10);
    if (!(length > 0)) break;
    const record = rest.slice(space + 1, length - 1);
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'path') found = record.slice(eq + 1);
    rest = rest.slice(length);
  }
  return found;
}

/**
 * The contents of the first regular file in the gzip-compressed tar `archive`
 * whose entry name satisfies `wanted`, or null if none does.
 */
function fileFromTarGz(archive, wanted) {
  const tar = zlib.gunzipSync(archive);
  let offset = 0;
  let longName = null;
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    let name = cString(header, 0, 100);
    const magic = cString(header, 257, 6);
    const prefix = magic.startsWith('ustar') ? cString(header, 345, 155) : '';
    if (prefix !== '') name = `${prefix}/${name}`;
    const type = header[156] === 0 ? '0' : String.fromCharCode(header[156]);
    const size = tarSize(header);
    const data = tar.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = cString(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      longName = paxPath(data) || longName;
      continue;
    }
    if (type === 'g') continue;
    if (longName !== null) {
      name = longName;
      longName = null;
    }
    if ((type === '0' || type === '7') && wanted(name)) return Buffer.from(data);
  }
  return null;
}

/**
 * The contents of the first file in the zip `archive` whose entry name satisfies
 * `wanted`, or null if none does. Stored and deflated entries; no zip64.
 */
function fileFromZip(archive, wanted) {
  const minEnd = Math.max(0, archive.length - 22 - 0xffff);
  let end = -1;
  for (let i = archive.length - 22; i >= minEnd; i--) {
    if (archive.readUInt32LE(i) === 0x06054b50) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new Error('not a zip archive: no end-of-central-directory record');
  const count = archive.readUInt16LE(end + 10);
  let entry = archive.readUInt32LE(end + 16);
  for (let n = 0; n < count; n++) {
    if (archive.readUInt32LE(entry) !== 0x02014b50) {
      throw new Error('corrupt zip archive: bad central directory entry');
    }
    const method = archive.readUInt16LE(entry + 10);
    const compressedSize = archive.readUInt32LE(entry + 20);
    const nameLength = archive.readUInt16LE(entry + 28);
    const extraLength = archive.readUInt16LE(entry + 30);
    const commentLength = archive.readUInt16LE(entry + 32);
    const local = archive.readUInt32LE(entry + 42);
    const name = archive.toString('utf8', entry + 46, entry + 46 + nameLength);
    entry += 46 + nameLength + extraLength + commentLength;
    if (name.endsWith('/') || !wanted(name)) continue;
    if (archive.readUInt32LE(local) !== 0x04034b50) {
      throw new Error(`corrupt zip archive: bad local header for ${name}`);
    }
    const start = local + 30 + archive.readUInt16LE(local + 26) + archive.readUInt16LE(local + 28);
    const data = archive.subarray(start, start + compressedSize);
    if (method === 0) return Buffer.from(data);
    if (method === 8) return zlib.inflateRawSync(data);
    throw new Error(`zip entry ${name} uses unsupported compression method ${method}`);
  }
  return null;
}

module.exports = { fileFromTarGz, fileFromZip };
