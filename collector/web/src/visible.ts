// A copy of shared/visible.ts for the page (which is compiled on its own and cannot import from
// shared/); read that file for what is escaped and why. test/unit/visible.test.ts checks that the
// two agree on every code point: change both together.

const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\p{Cs}]/gu;

/** `text` with each invisible or display-changing character written as <U+XXXX> (4 to 6 hex digits). */
export function visible(text: string): string {
  return text.replace(HIDDEN, (c) => `<U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`);
}
