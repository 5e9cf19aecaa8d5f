// nameConstraints (RFC 5280 4.2.1.10): the DER value for a CA that may sign only for the given
// subtrees (a name type the list does not mention is excluded whole, so that a CA limited to
// DNS names cannot sign for IP addresses either, and the other way round); and reading one back
// to check, before signing, that a CA may sign for a name.
import { formatIPv4, formatIPv6 } from "../net/ip.ts";
import type { AltName, Subtree } from "./names.ts";

/** The extension's OID. */
export const NAME_CONSTRAINTS_OID = "2.5.29.30";

const TAG_DNS = 0x82; // [2] IMPLICIT IA5String
const TAG_IP = 0x87; // [7] IMPLICIT OCTET STRING
const TAG_SEQUENCE = 0x30;
const TAG_PERMITTED = 0xa0;
const TAG_EXCLUDED = 0xa1;

/** The DER NameConstraints for a CA limited to `permitted` (at least one subtree). */
export function nameConstraintsDer(permitted: readonly Subtree[]): Uint8Array {
  const excluded: Subtree[] = [];
  if (!permitted.some((s) => s.type === "dns")) excluded.push({ type: "dns", value: "" });
  if (!permitted.some((s) => s.type === "ip")) {
    excluded.push(network(4), network(16));
  }
  const parts = [tlv(TAG_PERMITTED, subtrees(permitted))];
  if (excluded.length > 0) parts.push(tlv(TAG_EXCLUDED, subtrees(excluded)));
  return tlv(TAG_SEQUENCE, concat(parts));
}

/** The DNS and IP subtrees of a nameConstraints value (other name types are left out). */
export interface Constraints {
  permitted: Subtree[];
  excluded: Subtree[];
}

/** Reads a DER NameConstraints value; undefined if it is not one. */
export function parseNameConstraints(der: Uint8Array): Constraints | undefined {
  const outer = readTlv(der, 0);
  if (!outer || outer.tag !== TAG_SEQUENCE || outer.end !== der.length) return undefined;
  const result: Constraints = { permitted: [], excluded: [] };
  for (let at = outer.start; at < outer.end;) {
    const part = readTlv(der, at);
    if (!part || (part.tag !== TAG_PERMITTED && part.tag !== TAG_EXCLUDED)) return undefined;
    const list = part.tag === TAG_PERMITTED ? result.permitted : result.excluded;
    for (let sub = part.start; sub < part.end;) {
      const tree = readTlv(der, sub);
      const name = tree && tree.tag === TAG_SEQUENCE ? readTlv(der, tree.start) : undefined;
      if (!tree || !name) return undefined;
      const content = der.subarray(name.start, name.end);
      if (name.tag === TAG_DNS) {
        list.push({ type: "dns", value: new TextDecoder().decode(content).toLowerCase() });
      } else if (name.tag === TAG_IP && (content.length === 8 || content.length === 32)) {
        const half = content.length / 2;
        const bytes = content.slice(0, half);
        const mask = content.slice(half);
        const text = half === 4 ? formatIPv4(bytes) : formatIPv6(bytes);
        list.push({ type: "ip", value: `${text}/${prefixLength(mask)}`, bytes, mask });
      }
      sub = tree.end;
    }
    at = part.end;
  }
  return result;
}

/** Whether a CA with these constraints may sign for the name (RFC 5280 4.2.1.10 rules). */
export function permits(constraints: Constraints, name: AltName): boolean {
  const matches = (tree: Subtree) => subtreeMatches(tree, name);
  if (constraints.excluded.some(matches)) return false;
  const sameType = constraints.permitted.filter((tree) => tree.type === name.type);
  return sameType.length === 0 || sameType.some(matches);
}

function subtreeMatches(tree: Subtree, name: AltName): boolean {
  if (tree.type === "dns" && name.type === "dns") {
    const base = tree.value;
    if (base === "") return true;
    if (base.startsWith(".")) return name.value.endsWith(base);
    return name.value === base || name.value.endsWith(`.${base}`);
  }
  if (tree.type === "ip" && name.type === "ip") {
    if (tree.bytes.length !== name.bytes.length) return false;
    return name.bytes.every((b, i) => (b & (tree.mask[i] ?? 0)) === (tree.bytes[i] ?? 0));
  }
  return false;
}

function prefixLength(mask: Uint8Array): number {
  let bits = 0;
  for (const byte of mask) for (let b = 7; b >= 0; b--) bits += (byte >> b) & 1;
  return bits;
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function readTlv(der: Uint8Array, at: number): Tlv | undefined {
  const tag = der[at];
  let length = der[at + 1];
  if (tag === undefined || length === undefined) return undefined;
  let start = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3) return undefined;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (der[start + i] ?? 0);
    start += count;
  }
  const end = start + length;
  return end <= der.length ? { tag, start, end } : undefined;
}

function network(size: number): Subtree {
  const zero = new Uint8Array(size);
  return { type: "ip", value: size === 4 ? "0.0.0.0/0" : "::/0", bytes: zero, mask: zero };
}

function subtrees(list: readonly Subtree[]): Uint8Array {
  return concat(list.map((s) => tlv(TAG_SEQUENCE, generalName(s))));
}

function generalName(s: Subtree): Uint8Array {
  if (s.type === "dns") return tlv(TAG_DNS, new TextEncoder().encode(s.value));
  return tlv(TAG_IP, concat([s.bytes, s.mask]));
}

function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length;
  let length: number[];
  if (n < 0x80) length = [n];
  else if (n < 0x100) length = [0x81, n];
  else if (n < 0x10000) length = [0x82, n >> 8, n & 0xff];
  else length = [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return concat([Uint8Array.from([tag, ...length]), content]);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
