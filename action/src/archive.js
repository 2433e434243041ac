'use strict';
// Reads one file out of a release archive (.tar.gz) in memory, so the action
// needs no `tar` on the runner and works the same on Linux and macOS.

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

module.exports = { fileFromTarGz };
