// Text from a host shown to a person. File names, process names and host names are chosen by
// whoever is on that host, and Unicode lets a name look like something else: a right-to-left
// override (U+202E) makes `ld.so.2<RLO>txt.exe` read `ld.so.2exe.txt`, a zero-width space hides
// a difference between two names, an ESC drives the terminal. visible() writes every character
// that is invisible or acts on how the rest is displayed as <U+XXXX>, so what a person reads is
// what is on the disk, in the order it is there.
//
// What is escaped: control characters (C0, DEL, C1: Cc), format characters (Cf: the bidirectional
// embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks U+200E, U+200F and
// U+061C, zero-width U+200B-U+200D, U+2060, U+FEFF, tag characters), the line and paragraph
// separators U+2028/U+2029 (Zl, Zp), every other default-ignorable code point (fillers, variation
// selectors: characters a font draws as nothing), and lone surrogates (Cs: no character at all).
// Newline and tab are escaped as well: a caller that shows several lines splits on "\n" first.
//
// <U+XXXX> and not \xNN: alerts already use \xNN for bytes that are not UTF-8 (agent/src/byte-path.ts),
// so the two never read alike. A name that contains the literal text "<U+202E>" reads the same as
// one that contains the character: that can only make a name look more suspicious, never hide one.
//
// The dashboard's page cannot import this file (collector/web is compiled on its own, rootDir src,
// and served flat from collector/web/dist): collector/web/src/visible.ts is a copy, and
// test/unit/visible.test.ts checks that both give the same answer for every code point.

const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\p{Cs}]/gu;

/** `text` with each invisible or display-changing character written as <U+XXXX> (4 to 6 hex digits). */
export function visible(text: string): string {
  return text.replace(HIDDEN, (c) => `<U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`);
}
