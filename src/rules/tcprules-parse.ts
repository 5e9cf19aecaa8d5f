// The rules file grammar of djb's tcprules 0.88, quirks included, byte for byte (reference
// section 3.2-3.4): each line is `address:allow|deny[,VAR=QvalueQ]...`, and compiles to one cdb
// record per address (ranges expand to several) whose data is `D\0` and/or `+VAR=value\0` items.
//
// One extension, from Debian's ucspi-tcp-ipv6 tcprules: the address ends at the first `:` that
// is followed by `allow` or `deny` (not simply the first `:`), so IPv6 keys such as `::1` can
// be written. Every line djb's tcprules accepts compiles to the same record; lines it rejects
// only because their first `:` starts no instruction are accepted as the IPv6 variant does.

import type { CdbRecord } from "./cdb.ts";

/** A line tcprules cannot parse. `line` is what djb prints after "unable to parse this line: ". */
export class RuleLineError extends Error {
  readonly code = "ERULELINE";
  /** The line without its trailing newline, spaces and tabs, cut at its first NUL byte. */
  readonly line: Buffer;
  /** 1-based line number in the input. */
  readonly lineNumber: number;
  override name = "RuleLineError";
  constructor(line: Buffer, lineNumber: number) {
    const nul = line.indexOf(0);
    const shown = nul === -1 ? line : line.subarray(0, nul);
    super(`unable to parse this line: ${shown.toString("latin1")}`);
    this.line = shown;
    this.lineNumber = lineNumber;
  }
}

export interface ParseOptions {
  /** Split at the first `:` followed by allow/deny (ucspi-tcp-ipv6); false: at the first `:`. */
  ipv6Keys?: boolean;
}

const NL = 0x0a;
const COLON = 0x3a;
const COMMA = 0x2c;
const EQUALS = 0x3d;
const DOT = 0x2e;
const DASH = 0x2d;
const AT = 0x40;
const ALLOW = Buffer.from("allow", "latin1");
const DENY = Buffer.from("deny", "latin1");
const U64 = 2n ** 64n;

/** Thrown inside a line; parseRuleLines adds the line. */
class Bad extends Error {}

function startsWith(bytes: Buffer, at: number, word: Buffer): boolean {
  return (
    bytes.length - at >= word.length &&
    bytes.compare(word, 0, word.length, at, at + word.length) === 0
  );
}

/** The line without trailing newline, space and tab bytes, as tcprules trims it. */
function trimEnd(line: Buffer): Buffer {
  let len = line.length;
  while (len > 0) {
    const ch = line[len - 1];
    if (ch !== NL && ch !== 0x20 && ch !== 0x09) break;
    len--;
  }
  return line.subarray(0, len);
}

/** Where the address ends: the first `:` (djb), or the first one starting allow/deny (IPv6). */
function findColon(line: Buffer, ipv6Keys: boolean): number {
  const first = line.indexOf(COLON);
  if (!ipv6Keys || first === -1) return first;
  for (let at = first; at !== -1; at = line.indexOf(COLON, at + 1)) {
    if (startsWith(line, at + 1, DENY) || startsWith(line, at + 1, ALLOW)) return at;
  }
  return first;
}

/** The compiled value of the instructions after the colon: `D\0`, then `+VAR=value\0` items. */
function compileInstructions(text: Buffer): Buffer {
  const parts: Buffer[] = [];
  let x = 0;
  if (startsWith(text, 0, DENY)) {
    parts.push(Buffer.from("D\0", "latin1"));
    x = DENY.length;
  } else if (startsWith(text, 0, ALLOW)) {
    x = ALLOW.length;
  } else {
    throw new Bad();
  }
  while (x < text.length) {
    if (text[x] !== COMMA) throw new Bad();
    const eq = text.indexOf(EQUALS, x);
    if (eq === -1) throw new Bad();
    parts.push(Buffer.from("+", "latin1"), text.subarray(x + 1, eq + 1));
    x = eq + 1;
    if (x >= text.length) throw new Bad();
    const quote = text[x] ?? 0;
    x++;
    const close = text.indexOf(quote, x);
    if (close === -1) throw new Bad();
    parts.push(text.subarray(x, close), Buffer.from([0]));
    x = close + 1;
  }
  return Buffer.concat(parts);
}

/** djb's getnum: leading decimal digits (modulo 2^64), which must end the text or meet a NUL. */
function getnum(text: Buffer): bigint {
  let value = 0n;
  let i = 0;
  for (; i < text.length; i++) {
    const c = text[i] ?? 0;
    if (c < 0x30 || c > 0x39) break;
    value = (value * 10n + BigInt(c - 0x30)) % U64;
  }
  if (i < text.length && text[i] !== 0) throw new Bad();
  return value;
}

/** The keys of one address: itself, or one per value of its first `A-B` range. */
function expandAddress(address: Buffer): Buffer[] {
  const dash = address.indexOf(DASH);
  if (address.includes(EQUALS) || address.includes(AT) || dash === -1) return [address];
  const left = dash === 0 ? 0 : address.lastIndexOf(DOT, dash - 1) + 1;
  const nextDot = address.indexOf(DOT, dash + 1);
  const right = nextDot === -1 ? address.length : nextDot;
  let bot = getnum(address.subarray(left, dash));
  let top = getnum(address.subarray(dash + 1, right));
  if (top > 255n) top = 255n;
  const keys: Buffer[] = [];
  const head = address.subarray(0, left);
  const tail = address.subarray(right);
  for (; bot <= top; bot++) keys.push(Buffer.concat([head, Buffer.from(String(bot)), tail]));
  return keys;
}

/** The records of one line, in order; [] for a comment, an empty line or a line without `:`. */
function parseLine(raw: Buffer, ipv6Keys: boolean): CdbRecord[] {
  if (raw[0] === 0x23 /* # */ || raw[0] === NL) return [];
  const line = trimEnd(raw);
  const colon = findColon(line, ipv6Keys);
  if (colon === -1) return [];
  const data = compileInstructions(line.subarray(colon + 1));
  return expandAddress(line.subarray(0, colon)).map((key) => ({ key, data }));
}

/**
 * The cdb records that tcprules writes for this rules text, in order. Bytes are bytes (no
 * decoding); the last line needs no newline. Throws RuleLineError for the first bad line.
 */
export function parseRuleLines(text: Buffer, options: ParseOptions = {}): CdbRecord[] {
  const ipv6Keys = options.ipv6Keys ?? true;
  const records: CdbRecord[] = [];
  let lineNumber = 0;
  for (let start = 0; start < text.length;) {
    const nl = text.indexOf(NL, start);
    const end = nl === -1 ? text.length : nl + 1;
    const raw = text.subarray(start, end);
    lineNumber++;
    start = end;
    try {
      records.push(...parseLine(raw, ipv6Keys));
    } catch (error) {
      if (error instanceof Bad) throw new RuleLineError(trimEnd(raw), lineNumber);
      throw error;
    }
  }
  return records;
}
