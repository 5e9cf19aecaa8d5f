// The rules lookup tcpserver -x does (ucspi-tcp 0.88 rules.c, reference section 3.5): try keys
// from the most to the least specific and follow the first one present in the cdb.
//
// IPv6, as Debian's ucspi-tcp-ipv6 (1:0.88-7) does it, observed with its tcprules, tcprulescheck
// and tcpserver: the key is the address text exactly as TCPREMOTEIP holds it (`::1`,
// `2001:db8::1:2`; an IPv4 client of a dual-stack listener is `127.0.0.1`), and step 5 tries
// every prefix that ends in `.` or `:`, longest first (`2001:db8::1:`, `2001:db8::`,
// `2001:db8:`, `2001:`). For IPv4 addresses that is djb's rule unchanged.

import { readFileSync, statSync } from "node:fs";
import { osPath } from "../ucspi/os-string.ts";
import { isIPv4 } from "node:net";
import { ipv6Groups } from "../net/ip.ts";
import { cdbFind } from "./cdb.ts";

/** Who is connecting: TCPREMOTEIP, and TCPREMOTEHOST / TCPREMOTEINFO when they are set. */
export interface RulesClient {
  ip: string;
  host?: string | undefined;
  info?: string | undefined;
  /** The port the client asked for, under tcpserver --transparent or --redirected (one
   * listener for many ports): every key is tried first as `PORT/key` (`25/10.0.0.2`,
   * `25/10.0.0.`, `25/`), then as djb's. */
  localPort?: number | undefined;
}

export interface RulesVerdict {
  /** The key of the rule that matched; undefined when none did (the default: allow). */
  key: string | undefined;
  deny: boolean;
  /** The rule's `+VAR=value` items in stored order (also kept for a deny rule). */
  env: [string, string][];
}

export interface RuleMatch {
  key: string;
  /** The rule's compiled value: NUL-terminated items. */
  data: Buffer;
}

/** The keys tcpserver tries for this client, in djb's order (steps 1-8); with a local port,
 * those keys for that port first. */
export function ruleKeys(who: RulesClient): string[] {
  const keys = clientKeys(who);
  if (who.localPort === undefined) return keys;
  return [...keys.map((key) => `${who.localPort}/${key}`), ...keys];
}

function clientKeys(who: RulesClient): string[] {
  const { ip, host, info } = who;
  const keys: string[] = [];
  if (info !== undefined) {
    keys.push(`${info}@${ip}`);
    if (host !== undefined) keys.push(`${info}@=${host}`);
  }
  keys.push(ip);
  if (host !== undefined) keys.push(`=${host}`);
  for (let len = ip.length; len > 0; len--) {
    const last = ip[len - 1];
    if (last === "." || last === ":") keys.push(ip.slice(0, len));
  }
  if (host !== undefined) {
    for (let i = 0; i < host.length; i++) if (host[i] === ".") keys.push(`=${host.slice(i)}`);
    keys.push("=");
  }
  keys.push("");
  return keys;
}

/** The first rule present for this client, or undefined. Throws CdbFormatError on a bad cdb. */
export function findRule(cdb: Buffer, who: RulesClient): RuleMatch | undefined {
  for (const key of ruleKeys(who)) {
    const data = cdbFind(cdb, Buffer.from(key, "latin1"));
    if (data !== undefined) return { key, data };
  }
  return undefined;
}

/** The NUL-terminated items of a rule's value, without their NULs; a trailing rest is dropped. */
export function ruleItems(data: Buffer): Buffer[] {
  const items: Buffer[] = [];
  for (
    let start = 0, nul = data.indexOf(0);
    nul !== -1;
    start = nul + 1, nul = data.indexOf(0, start)
  ) {
    items.push(data.subarray(start, nul));
  }
  return items;
}

/**
 * What tcpserver does with this client: the matching key, deny or not, and the variables to set
 * (`D` anywhere denies; `+VAR=value` sets; other items, and `+` items without `=`, are ignored,
 * as djb does). Values are decoded as UTF-8, the encoding Node uses for the environment.
 */
export function lookupRules(cdb: Buffer, who: RulesClient): RulesVerdict {
  const match = findRule(cdb, who);
  if (match === undefined) return { key: undefined, deny: false, env: [] };
  let deny = false;
  const env: [string, string][] = [];
  for (const item of ruleItems(match.data)) {
    if (item[0] === 0x44 /* D */) deny = true;
    if (item[0] !== 0x2b /* + */) continue;
    const eq = item.indexOf(0x3d /* = */, 1);
    if (eq === -1) continue;
    // Byte strings, as env values are (src/ucspi/env.ts).
    env.push([item.subarray(1, eq).toString("latin1"), item.subarray(eq + 1).toString("latin1")]);
  }
  return { key: match.key, deny, env };
}

/** The version of each rules file read last, known by what stat says of it. */
const lastRead = new Map<string, { version: string; bytes: Buffer }>();

/** The rules cdb at `path` as it is now (tcprules may have replaced it, a person may have
 * written over it): read again only when it changed, for a cdb of 200,000 rules is megabytes
 * and tcpserver -x asks for every connection. fs errors keep `code`. */
export function readRulesFile(path: string): Buffer {
  const s = statSync(osPath(path), { bigint: true });
  // Any write changes ctime (nanoseconds), a replacement the inode.
  const version = `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  const last = lastRead.get(path);
  if (last?.version === version) return last.bytes;
  const bytes = readFileSync(osPath(path));
  lastRead.set(path, { version, bytes });
  return bytes;
}

/**
 * An address as Debian's ucspi-tcp-ipv6 tcpserver writes it in TCPREMOTEIP and in rule keys: no
 * zone; an IPv4-mapped address as its dotted quad (unless `keepMapped`, its `-6` mode:
 * `::ffff:1.2.3.4`); other IPv6 in lowercase hex with the first longest run of zero groups
 * written `::`, even a single group (`2001:db8::1:1:1:1:1`, where inet_ntop keeps `:0:`).
 * Text that is not an IP address is returned unchanged.
 */
export function ruleIp(address: string, options: { keepMapped?: boolean } = {}): string {
  const ip = address.split("%")[0] ?? address;
  if (isIPv4(ip)) return ip;
  const groups = ipv6Groups(ip);
  if (groups === undefined) return address;
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  const quad = `${(groups[6] ?? 0) >> 8}.${(groups[6] ?? 0) & 255}.${(groups[7] ?? 0) >> 8}.${(groups[7] ?? 0) & 255}`;
  if (mapped) return options.keepMapped ? `::ffff:${quad}` : quad;
  let best = 0;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  let text = "";
  for (let k = 0; k < 8; k++) {
    if (bestLen > 0 && k === best) {
      text += k === 0 ? "::" : ":";
      k += bestLen - 1;
      continue;
    }
    text += (groups[k] ?? 0).toString(16);
    if (k < 7) text += ":";
  }
  return text;
}
