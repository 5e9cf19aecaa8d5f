// IP addresses, one module for every program: text <-> bytes, strictly (inet_pton's grammar, no
// leading zeros in IPv4 numbers, no zone ids), a prefix test for incremental parsing
// (`isIPv4Prefix(s)` is true when some valid address starts with s), IPv6 printed the way Node
// prints socket addresses, and IPv4-mapped IPv6 addresses.

interface DottedScan {
  octets: number[];
  /** The number being read, "" right after a dot or at the start. */
  cur: string;
}

function isDigit(ch: string): boolean {
  return ch >= "0" && ch <= "9";
}

function isHex(ch: string): boolean {
  return isDigit(ch) || (ch >= "a" && ch <= "f") || (ch >= "A" && ch <= "F");
}

/** One character of a dotted quad; false if no valid quad can follow. */
function dottedStep(st: DottedScan, ch: string): boolean {
  if (isDigit(ch)) {
    if (st.cur === "0") return false; // a leading zero: octal-looking, refused
    st.cur += ch;
    return Number(st.cur) <= 255;
  }
  if (ch === ".") {
    if (st.cur === "" || st.octets.length === 3) return false;
    st.octets.push(Number(st.cur));
    st.cur = "";
    return true;
  }
  return false;
}

function dottedEnd(st: DottedScan): number[] | undefined {
  if (st.octets.length !== 3 || st.cur === "") return undefined;
  return [...st.octets, Number(st.cur)];
}

function scanIPv4(s: string): DottedScan | undefined {
  const st: DottedScan = { octets: [], cur: "" };
  for (const ch of s) if (!dottedStep(st, ch)) return undefined;
  return st;
}

export function isIPv4Prefix(s: string): boolean {
  return scanIPv4(s) !== undefined;
}

/** The 4 bytes of a strict dotted quad, or undefined. */
export function parseIPv4(s: string): Uint8Array | undefined {
  const st = scanIPv4(s);
  const octets = st && dottedEnd(st);
  return octets ? Uint8Array.from(octets) : undefined;
}

export function formatIPv4(b: Uint8Array): string {
  return `${b[0] ?? 0}.${b[1] ?? 0}.${b[2] ?? 0}.${b[3] ?? 0}`;
}

interface V6Scan {
  /** 16-bit groups before "::" (all of them when there is none) and after it. */
  head: number[];
  tail: number[];
  double: boolean;
  /** The hex group being read. */
  tok: string;
  /** The dotted IPv4 tail being read, once a "." was seen. */
  v4: DottedScan | undefined;
  /** 1: a single ":" was just read (a group or a second ":" must follow); 2: "::" was. */
  colons: 0 | 1 | 2;
  /** The single ":" is the first character: only a second ":" may follow. */
  leading: boolean;
}

function v6Step(st: V6Scan, ch: string): boolean {
  if (st.v4) return dottedStep(st.v4, ch);
  if (isHex(ch)) {
    if (st.leading || st.tok.length === 4) return false;
    st.tok += ch;
    st.colons = 0;
  } else if (ch === ":") {
    if (st.tok !== "") {
      (st.double ? st.tail : st.head).push(parseInt(st.tok, 16));
      st.tok = "";
      st.colons = 1;
    } else if (st.colons === 1) {
      if (st.double) return false;
      st.double = true;
      st.colons = 2;
      st.leading = false;
    } else if (st.colons === 2 || st.head.length > 0) {
      return false;
    } else {
      st.colons = 1;
      st.leading = true;
    }
  } else if (ch === ".") {
    const v4: DottedScan = { octets: [], cur: "" };
    for (const d of st.tok) if (!dottedStep(v4, d)) return false;
    if (!dottedStep(v4, ".")) return false;
    st.v4 = v4;
    st.tok = "";
    // No group can come after a dotted tail: without "::" it must be groups 7 and 8.
    if (!st.double && st.head.length !== 6) return false;
  } else {
    return false;
  }
  // The fewest groups any completion needs: explicit ones, the one being read (two for a dotted
  // tail), one after a lone ":", and at least one for "::".
  const pending = st.v4 ? 2 : st.tok !== "" ? 1 : 0;
  const needed =
    st.head.length + st.tail.length + pending + (st.colons === 1 ? 1 : 0) + (st.double ? 1 : 0);
  return needed <= 8;
}

function scanIPv6(s: string): V6Scan | undefined {
  const st: V6Scan = {
    head: [],
    tail: [],
    double: false,
    tok: "",
    v4: undefined,
    colons: 0,
    leading: false,
  };
  for (const ch of s) if (!v6Step(st, ch)) return undefined;
  return st;
}

export function isIPv6Prefix(s: string): boolean {
  return scanIPv6(s) !== undefined;
}

/** The 16 bytes of a textual IPv6 address (as inet_pton reads it, without zone), or undefined. */
export function parseIPv6(s: string): Uint8Array | undefined {
  const st = scanIPv6(s);
  if (!st || st.colons === 1) return undefined;
  const last = st.double ? st.tail : st.head;
  if (st.v4) {
    const o = dottedEnd(st.v4);
    if (!o) return undefined;
    last.push(((o[0] ?? 0) << 8) | (o[1] ?? 0), ((o[2] ?? 0) << 8) | (o[3] ?? 0));
  } else if (st.tok !== "") {
    last.push(parseInt(st.tok, 16));
  }
  const explicit = st.head.length + st.tail.length;
  if (st.double ? explicit > 7 : explicit !== 8) return undefined;
  const groups = [...st.head, ...new Array<number>(8 - explicit).fill(0), ...st.tail];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/**
 * IPv6 text as Node prints socket addresses (libuv's inet_ntop): lowercase hex without leading
 * zeros, the longest run of two or more zero groups (the first one on a tie) as "::", and a
 * dotted tail for IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) addresses.
 */
export function formatIPv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0));
  let best = { base: -1, len: 0 };
  let cur = { base: -1, len: 0 };
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && words[i] === 0) {
      cur = cur.base === -1 ? { base: i, len: 1 } : { base: cur.base, len: cur.len + 1 };
    } else if (cur.base !== -1) {
      if (best.base === -1 || cur.len > best.len) best = cur;
      cur = { base: -1, len: 0 };
    }
  }
  if (best.len < 2) best = { base: -1, len: 0 };
  const v4Tail = best.base === 0 && (best.len === 6 || (best.len === 5 && words[5] === 0xffff));
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (best.base !== -1 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) out += ":";
      continue;
    }
    if (i !== 0) out += ":";
    if (i === 6 && v4Tail) return out + formatIPv4(b.subarray(12, 16));
    out += (words[i] ?? 0).toString(16);
  }
  if (best.base !== -1 && best.base + best.len === 8) out += ":";
  return out;
}

/** The canonical text of an address of the family, or undefined if it is not one. */
export function canonicalIP(s: string, family: "tcp4" | "tcp6"): string | undefined {
  if (family === "tcp4") {
    const b = parseIPv4(s);
    return b && formatIPv4(b);
  }
  const b = parseIPv6(s);
  return b && formatIPv6(b);
}

/** The eight 16-bit groups of an IPv6 literal (a `%zone` is ignored), else undefined. */
export function ipv6Groups(ip: string): number[] | undefined {
  const bytes = parseIPv6(ip.split("%")[0] ?? "");
  if (!bytes) return undefined;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
  return groups;
}

/** True for an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, `::ffff:7f00:1`, any spelling). */
export function isIPv4Mapped(ip: string): boolean {
  const groups = ipv6Groups(ip);
  if (groups === undefined) return false;
  return groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
}

/** True for an IPv6 link-local address (fe80::/10), which means nothing without its interface. */
export function isLinkLocal(ip: string): boolean {
  const first = ipv6Groups(ip)?.[0];
  return first !== undefined && (first & 0xffc0) === 0xfe80;
}

/** `::ffff:127.0.0.1` → `127.0.0.1`; any other text is returned unchanged. */
export function unmapIPv4(ip: string): string {
  // Most addresses are IPv4 already (no colon): nothing to parse, once per connection or more.
  if (!ip.includes(":")) return ip;
  const bytes = isIPv4Mapped(ip) ? parseIPv6(ip.split("%")[0] ?? "") : undefined;
  return bytes ? formatIPv4(bytes.subarray(12, 16)) : ip;
}

/** An address as tcpserver writes it in its log lines and looks it up in its rules: an IPv4 one
 * as a dotted quad, or with -6 (`v6Form`, Debian's forced IPv6 mode) in the mapped form. */
export function shownIp(ip: string, v6Form: boolean): string {
  const plain = unmapIPv4(ip);
  return v6Form && !plain.includes(":") ? mapIPv4(plain) : plain;
}

/** The IPv4-mapped IPv6 spelling of an IPv4 address (`127.0.0.1` → `::ffff:127.0.0.1`). */
export function mapIPv4(ip: string): string {
  return `::ffff:${ip}`;
}

/** An address in one spelling: IPv4 dotted, IPv6 as formatIPv6 writes it, an IPv4-mapped one
 * as IPv4; undefined when `text` is not an address. */
export function canonicalAddress(text: string): string | undefined {
  const v4 = parseIPv4(text);
  if (v4) return formatIPv4(v4);
  const v6 = parseIPv6(text);
  return v6 ? unmapIPv4(formatIPv6(v6)) : undefined;
}

/** The reverse-DNS name of an address, as RFC 8738 names it in tls-alpn-01 (`4.3.2.1.in-addr.arpa`,
 * 32 nibbles then `ip6.arpa`), with no root dot. */
export function arpaName(address: string): string | undefined {
  const v4 = parseIPv4(address);
  if (v4) return `${[...v4].reverse().join(".")}.in-addr.arpa`;
  const v6 = parseIPv6(address);
  if (!v6) return undefined;
  const nibbles = [...v6].flatMap((b) => [b >> 4, b & 15]).reverse();
  return `${nibbles.map((n) => n.toString(16)).join(".")}.ip6.arpa`;
}

/** The address a reverse-DNS name stands for (canonicalAddress's spelling); undefined for any
 * other name. Case is not significant; a root dot is allowed. */
export function addressOfArpaName(name: string): string | undefined {
  const labels = name.toLowerCase().replace(/\.$/, "").split(".");
  const zone = labels.splice(-2).join(".");
  if (zone === "in-addr.arpa" && labels.length === 4) {
    if (!labels.every((l) => /^(0|[1-9][0-9]{0,2})$/.test(l) && Number(l) <= 255)) return undefined;
    return labels.reverse().join(".");
  }
  if (zone === "ip6.arpa" && labels.length === 32) {
    if (!labels.every((l) => /^[0-9a-f]$/.test(l))) return undefined;
    const bytes = new Uint8Array(16);
    const hex = labels.reverse();
    for (let i = 0; i < 16; i++) bytes[i] = parseInt(`${hex[2 * i]}${hex[2 * i + 1]}`, 16);
    return unmapIPv4(formatIPv6(bytes));
  }
  return undefined;
}
