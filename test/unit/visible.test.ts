// visible(): what a person is shown of a name from a host (shared/visible.ts), and the page's copy
// of it (collector/web/src/visible.ts), which must give the same answer.
import { describe, expect, it } from 'vitest';
import { visible as pageVisible } from '../../collector/web/src/visible.js';
import { visible } from '../../shared/visible.js';

describe('visible', () => {
  it('writes a right-to-left override where it is, so the name reads in its real order', () => {
    expect(visible('/usr/lib64/ld-linux-x86-64.so.2\u202Etxt.exe')).toBe('/usr/lib64/ld-linux-x86-64.so.2<U+202E>txt.exe');
  });

  it('escapes every bidirectional control and zero-width character the issue names', () => {
    const named = [
      0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c,
      0x200b, 0x200c, 0x200d, 0x2060, 0xfeff,
    ];
    for (const cp of named) {
      expect(visible(`a${String.fromCodePoint(cp)}b`)).toBe(`a<U+${cp.toString(16).toUpperCase().padStart(4, '0')}>b`);
    }
  });

  it('escapes C0 and C1 controls, DEL, line separators and lone surrogates', () => {
    expect(visible('\x1b[2J\ttab\nline\r\x7f\x85\x9f')).toBe('<U+001B>[2J<U+0009>tab<U+000A>line<U+000D><U+007F><U+0085><U+009F>');
    expect(visible('a\u2028b\u2029c')).toBe('a<U+2028>b<U+2029>c');
    expect(visible('a\uD800b\uDC00')).toBe('a<U+D800>b<U+DC00>');
    // Astral invisibles (a tag character) keep their full code point.
    expect(visible('x\u{E0041}')).toBe('x<U+E0041>');
  });

  it('leaves printable text alone: accents, other scripts, emoji, HTML, backslash escapes', () => {
    for (const s of ['/usr/lib64/ld-linux-x86-64.so.2', 'été', 'ファイル', 'ملف', '😀', '<img src=x>', 'bad\\xff\\x5c', ' ']) {
      expect(visible(s)).toBe(s);
    }
  });

  it('the page\'s copy agrees with it on every code point', () => {
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      // Surrogate code points alone are lone surrogates: checked as such below.
      const s = cp >= 0xd800 && cp <= 0xdfff ? String.fromCharCode(cp) : String.fromCodePoint(cp);
      const want = visible(s);
      if (pageVisible(s) !== want) expect.fail(`U+${cp.toString(16)}: page ${pageVisible(s)} vs shared ${want}`);
    }
  });
});
