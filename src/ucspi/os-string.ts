// Command-line words and file names as Unix has them: bytes, not always UTF-8. djb's programs
// pass a word they do not understand on untouched (`tcpserver 0 0 prog $'\xff'` runs prog with
// the byte ff), where Node decodes argv as UTF-8 and makes each bad byte U+FFFD.
//
// Such a word is kept here as Python keeps it (PEP 383, "surrogateescape"): UTF-8 decoded, with
// each byte that is not part of valid UTF-8 held by the lone surrogate U+DC80 + byte. A word
// that is valid UTF-8 is the very string Node gives, so everything that reads words as text
// goes on as before; the bytes come back where they leave us: at a spawn (the native addon
// encodes argv so, src/native/ucspi_native.c), at a file name (osPath) and in the environment,
// whose values are byte strings (toBytes, src/ucspi/env.ts).
import { readdirSync } from "node:fs";

const decoder = new TextDecoder("utf-8", { fatal: true });

/** The bytes as a string: UTF-8, each byte of no valid sequence escaped (U+DC80 + byte). */
export function decodeOs(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    return decodeEscaping(bytes);
  }
}

function decodeEscaping(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const n = sequenceLength(bytes, i);
    if (n === 0) out += String.fromCharCode(0xdc00 + (bytes[i] ?? 0));
    else out += decoder.decode(bytes.subarray(i, i + n));
    i += n || 1;
  }
  return out;
}

/** The length of the valid UTF-8 sequence at i (Unicode's table 3-7: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0 when the byte there starts none. */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i] ?? 0;
  if (b < 0x80) return 1;
  let n: number, low: number, high: number;
  if (b >= 0xc2 && b <= 0xdf) [n, low, high] = [2, 0x80, 0xbf];
  else if (b === 0xe0) [n, low, high] = [3, 0xa0, 0xbf];
  else if (b === 0xed) [n, low, high] = [3, 0x80, 0x9f];
  else if (b >= 0xe1 && b <= 0xef) [n, low, high] = [3, 0x80, 0xbf];
  else if (b === 0xf0) [n, low, high] = [4, 0x90, 0xbf];
  else if (b === 0xf4) [n, low, high] = [4, 0x80, 0x8f];
  else if (b >= 0xf1 && b <= 0xf3) [n, low, high] = [4, 0x80, 0xbf];
  else return 0;
  const second = bytes[i + 1];
  if (second === undefined || second < low || second > high) return 0;
  for (let k = 2; k < n; k++) {
    const next = bytes[i + k];
    if (next === undefined || next < 0x80 || next > 0xbf) return 0;
  }
  return n;
}

/** The bytes a string stands for: decodeOs undone (a lone surrogate that escapes no byte is
 * U+FFFD's bytes, as Node writes it). */
export function encodeOs(text: string): Buffer {
  if (text.isWellFormed()) return Buffer.from(text, "utf8");
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && isLow(text.charCodeAt(i + 1))) i++;
    else if (c >= 0xdc80 && c <= 0xdcff) {
      parts.push(Buffer.from(text.slice(start, i), "utf8"), Buffer.of(c - 0xdc00));
      start = i + 1;
    }
  }
  parts.push(Buffer.from(text.slice(start), "utf8"));
  return Buffer.concat(parts);
}

function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** A file name for node:fs: the string itself when it escapes no byte, else its bytes. */
export function osPath(name: string): string | Buffer {
  return name.isWellFormed() ? name : encodeOs(name);
}

/** A file name from the environment (a byte string, src/ucspi/env.ts) as such a string. */
export function osFromBytes(value: string): string {
  return decodeOs(Buffer.from(value, "latin1"));
}

/** A string for a human: each escaped byte written `\xff`. */
export function shownOs(text: string): string {
  if (text.isWellFormed()) return text;
  return text.replace(/(?<![\ud800-\udbff])[\udc80-\udcff]/g, (c) => {
    return `\\x${(c.charCodeAt(0) - 0xdc00).toString(16).padStart(2, "0")}`;
  });
}

/** The names in a directory, their bytes kept (Node's own strings make a bad byte U+FFFD). */
export function namesIn(dir: string): string[] {
  return readdirSync(osPath(dir), { encoding: "buffer" }).map(decodeOs);
}
