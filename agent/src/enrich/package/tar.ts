// The members of a tar archive (ustar, with GNU long names and pax paths), as pacman's packages and
// sync databases are made (bsdtar). Read from memory; a malformed header ends the walk.
const BLOCK = 512;

/** The name of an archive member, from ustar's prefix and name fields. */
function field(h: Buffer, at: number, len: number): string {
  const end = h.indexOf(0, at);
  return h.toString('utf8', at, end === -1 || end > at + len ? at + len : end);
}

/** Each regular file in `tar`: its name (no leading "./") and its bytes. */
export function* tarFiles(tar: Buffer): Generator<{ name: string; data: Buffer }> {
  let at = 0;
  let longName: string | null = null;
  while (at + BLOCK <= tar.length) {
    const h = tar.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) return;
    const size = parseInt(field(h, 124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0 || at + BLOCK + size > tar.length) return;
    const type = String.fromCharCode(h[156]!);
    const data = tar.subarray(at + BLOCK, at + BLOCK + size);
    const prefix = h.toString('latin1', 257, 263) === 'ustar\0' || h.toString('latin1', 257, 262) === 'ustar' ? field(h, 345, 155) : '';
    let name = longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    longName = null;
    if (type === 'L') longName = data.toString('utf8').replace(/\0.*$/s, '');
    else if (type === 'x') longName = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString('utf8'))?.[1] ?? null;
    else if (type === '0' || type === '\0') {
      name = name.replace(/^\.\//, '');
      yield { name, data };
    }
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
}
