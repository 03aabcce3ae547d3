// The escaping of paths that are not UTF-8 (agent/src/byte-path.ts): what a responder reads in
// file.path must give back the exact bytes, and paths that are UTF-8 must not change.
import { describe, expect, it } from 'vitest';
import { displayPath, eventPath, fromBytes, hostPathOf, isUtf8, joinPath, pathKey, splitPath } from '../../agent/src/byte-path.js';

const b = (hex: string) => Buffer.from(hex.replace(/ /g, ''), 'hex');

/** The inverse of displayPath for escaped paths: what a responder would do. */
function unescape(s: string): Buffer {
  const parts: Buffer[] = [];
  let last = 0;
  for (const m of s.matchAll(/\\x([0-9a-f]{2})/g)) {
    parts.push(Buffer.from(s.slice(last, m.index)), Buffer.from([parseInt(m[1]!, 16)]));
    last = m.index + 4;
  }
  parts.push(Buffer.from(s.slice(last)));
  return Buffer.concat(parts);
}

describe('byte paths', () => {
  it('tells UTF-8 from bytes as V8 does: no overlongs, surrogates, or code points above U+10FFFF', () => {
    for (const ok of ['', '61', 'c3a9', 'e282ac', 'f09f9880', 'f48fbfbf', 'ed9fbf']) expect(isUtf8(b(ok)), ok).toBe(true);
    for (const bad of ['ff', 'fe', '80', 'c0af', 'c3', 'e0808f', 'eda080', 'f4908080', 'f5808080', 'e282', '61c3']) {
      expect(isUtf8(b(bad)), bad).toBe(false);
      // Exactly the byte strings that a JS string cannot hold: decoding them changes them.
      expect(Buffer.from(b(bad).toString('utf8')).equals(b(bad)), bad).toBe(false);
    }
  });

  it('escapes each byte outside a UTF-8 sequence as \\xNN, and backslashes as \\x5c, in escaped paths only', () => {
    const p = Buffer.concat([Buffer.from('/lib64/ld-linux-x86-64.so.2.'), b('fffe'), Buffer.from('x\\é\\x41'), b('c3')]);
    const shown = displayPath(p);
    expect(shown).toBe('/lib64/ld-linux-x86-64.so.2.\\xff\\xfex\\x5cé\\x5cx41\\xc3');
    expect(unescape(shown).equals(p)).toBe(true);
    expect(displayPath('/lib64/a\\xff')).toBe('/lib64/a\\xff'); // a string is UTF-8: shown as is
  });

  it('keeps strings for UTF-8 paths and Buffers for the rest', () => {
    expect(fromBytes(Buffer.from('ld-linux.so.2'))).toBe('ld-linux.so.2');
    expect(joinPath('/usr/lib64', 'ld.so')).toBe('/usr/lib64/ld.so');
    const j = joinPath('/usr/lib64', b('ff'));
    expect(Buffer.isBuffer(j) && j.equals(Buffer.concat([Buffer.from('/usr/lib64/'), b('ff')]))).toBe(true);
    expect(eventPath({ dir: '/d', name: '\ufffd', rawName: b('ff') })).toEqual(Buffer.from('2f64 2fff'.replace(/ /g, ''), 'hex'));
    expect(eventPath({ dir: '/d', name: 'n' })).toBe('/d/n');
    expect(splitPath(Buffer.concat([Buffer.from('/r/'), b('80'), Buffer.from('/n')]))).toEqual({ dir: Buffer.concat([Buffer.from('/r/'), b('80')]), name: 'n' });
    expect(hostPathOf('/root', Buffer.concat([Buffer.from('/root/usr/'), b('ff')]))).toEqual(Buffer.concat([Buffer.from('/usr/'), b('ff')]));
    expect(hostPathOf('/root', '/root/usr/x')).toBe('/usr/x');
  });

  it('keys byte paths apart from any string path', () => {
    const bytes = Buffer.concat([Buffer.from('/a'), b('ff')]);
    expect(pathKey(bytes)).not.toBe(pathKey(displayPath(bytes)));
    expect(pathKey(bytes)).not.toBe(pathKey(Buffer.concat([Buffer.from('/a'), b('fe')])));
    expect(pathKey(bytes)).toBe(pathKey(Buffer.from(bytes)));
  });
});
