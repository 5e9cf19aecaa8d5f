// The names a certificate is for: DNS names (with an optional `*.` wildcard as the whole first
// label) and IP addresses, checked as TLS clients match them; and what a CA may be limited to
// (names and IP/prefix subtrees). A bad value is a BadNameError naming it, its option and why.
import { domainToASCII } from "node:url";
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "../net/ip.ts";
import { FatalError } from "../ucspi/errors.ts";

/** A subjectAltName entry; `value` is canonical (lower-case A-labels, canonical IP text). */
export type AltName =
  { type: "dns"; value: string } | { type: "ip"; value: string; bytes: Uint8Array };

/** A nameConstraints subtree: a DNS name (`.x` = below x only) or an IP network. */
export type Subtree =
  | { type: "dns"; value: string }
  | { type: "ip"; value: string; bytes: Uint8Array; mask: Uint8Array };

/** A value that is not what its option wants: exit 100, one line naming it. */
export class BadNameError extends FatalError {
  override name = "BadNameError";
  readonly code = "EBADNAME";
  constructor(option: string, value: string, reason: string) {
    super(`bad ${option} value ${shown(value)}: ${reason}`, 100);
  }
}

/** The value as typed, quoted only when it would not read unambiguously on one line. */
export function shown(value: string): string {
  return /^[\x21-\x7e]+$/.test(value) ? value : JSON.stringify(value);
}

/** Splits comma-separated option values (`--san a,b --san c`), dropping empty items; a value
 * with no item at all is an error. */
export function splitList(values: readonly string[], option: string): string[] {
  return values.flatMap((v) => {
    const items = v.split(",").filter((item) => item.trim() !== "");
    // `-s ''` (a variable that was empty, say) would otherwise give the default names.
    if (items.length === 0) throw new BadNameError(option, v, "names nothing");
    return items;
  });
}

/** A `--san` item: a DNS name, an IP address (`[v6]` too), or `DNS:x` / `IP:x` as openssl. */
export function parseAltName(text: string, option = "--san"): AltName {
  const bad = (reason: string) => new BadNameError(option, text, reason);
  let item = text.trim();
  let forced: "dns" | "ip" | undefined;
  const tagged = /^(dns|ip):(.*)$/is.exec(item);
  if (tagged) {
    forced = (tagged[1] ?? "").toLowerCase() as "dns" | "ip";
    item = tagged[2] ?? "";
  }
  if (forced === "ip" || (forced === undefined && looksLikeIP(item))) {
    const ip = parseIP(item);
    if (typeof ip === "string") throw bad(ip);
    return { type: "ip", value: ip.value, bytes: ip.bytes };
  }
  const reason = dnsNameProblem(item, true);
  if (typeof reason === "string") throw bad(reason);
  return { type: "dns", value: reason.name };
}

/** Every `--san` item of the lists, in order, without repeats. */
export function parseAltNames(values: readonly string[], option = "--san"): AltName[] {
  const seen = new Set<string>();
  const out: AltName[] = [];
  for (const item of splitList(values, option)) {
    const name = parseAltName(item, option);
    const key = `${name.type}:${name.value}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(name);
  }
  return out;
}

/** A `--permit` item: a DNS name (`.x` for the names below x only), an IP, or IP/prefix. */
export function parseSubtree(text: string, option = "--permit"): Subtree {
  const bad = (reason: string) => new BadNameError(option, text, reason);
  const item = text.trim();
  const slash = item.indexOf("/");
  if (slash >= 0 || looksLikeIP(item)) {
    const ip = parseIP(slash >= 0 ? item.slice(0, slash) : item);
    if (typeof ip === "string") throw bad(ip);
    const max = ip.bytes.length * 8;
    const lengthText = slash >= 0 ? item.slice(slash + 1) : String(max);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lengthText) || Number(lengthText) > max) {
      throw bad(`prefix length ${shown(lengthText)} is not a number from 0 to ${max}`);
    }
    const mask = prefixMask(ip.bytes.length, Number(lengthText));
    const network = ip.bytes.map((b, i) => b & (mask[i] ?? 0));
    if (network.some((b, i) => b !== ip.bytes[i])) {
      const text = network.length === 4 ? formatIPv4(network) : formatIPv6(network);
      throw bad(`host bits set (the network is ${text}/${lengthText})`);
    }
    return { type: "ip", value: `${ip.value}/${lengthText}`, bytes: ip.bytes, mask };
  }
  if (item.startsWith("*.")) throw bad(`write .${item.slice(2)} for the names below it`);
  const below = item.startsWith(".");
  const reason = dnsNameProblem(below ? item.slice(1) : item, false);
  if (typeof reason === "string") throw bad(reason);
  return { type: "dns", value: below ? `.${reason.name}` : reason.name };
}

/** Every `--permit` item of the lists, in order. */
export function parseSubtrees(values: readonly string[], option = "--permit"): Subtree[] {
  return splitList(values, option).map((item) => parseSubtree(item, option));
}

function looksLikeIP(item: string): boolean {
  return item.includes(":") || item.startsWith("[") || /^[0-9.]+$/.test(item);
}

function parseIP(item: string): { value: string; bytes: Uint8Array } | string {
  if (item.includes("%")) return "an IPv6 zone id has no place in a certificate";
  const inner = item.startsWith("[") && item.endsWith("]") ? item.slice(1, -1) : item;
  if (inner.includes(":")) {
    const bytes = parseIPv6(inner);
    return bytes ? { value: formatIPv6(bytes), bytes } : "not an IPv6 address";
  }
  const bytes = parseIPv4(inner);
  return bytes ? { value: formatIPv4(bytes), bytes } : "not an IPv4 address";
}

function prefixMask(size: number, length: number): Uint8Array {
  const mask = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    const bits = Math.max(0, Math.min(8, length - i * 8));
    mask[i] = (0xff00 >> bits) & 0xff;
  }
  return mask;
}

const LABEL = /^[a-z0-9-]+$/;

/** The canonical name, or why `input` is not a host name a TLS client could match. */
function dnsNameProblem(input: string, wildcard: boolean): { name: string } | string {
  if (input === "") return "empty name";
  let name = input.endsWith(".") && input !== "." ? input.slice(0, -1) : input;
  if (/[^\x20-\x7e]/.test(name)) {
    if (/[\x00-\x1f\x7f]/.test(name)) return "has a control character";
    const ascii = domainToASCII(name.toLowerCase());
    if (ascii === "") return "not a valid internationalized name";
    name = ascii;
  }
  name = name.toLowerCase();
  if (name.length > 253) return "longer than 253 characters";
  const labels = name.split(".");
  for (const [i, label] of labels.entries()) {
    if (label === "") return "empty label";
    if (label.includes("*")) {
      if (!wildcard) return "a wildcard has no place here";
      if (i !== 0 || label !== "*") return "a wildcard must be the whole first label (*.name)";
      continue;
    }
    if (label.length > 63) return `label ${label} is longer than 63 characters`;
    if (!LABEL.test(label)) return `label ${shown(label)} has a character other than a-z, 0-9, -`;
    if (label.startsWith("-") || label.endsWith("-")) return `label ${label} starts or ends with -`;
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? "")) return "the last label is all digits";
  if (labels[0] === "*" && labels.length < 3) return "a wildcard needs two labels after *.";
  return { name };
}
