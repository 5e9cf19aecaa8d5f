// Name lookups for TCPLOCALHOST / TCPREMOTEHOST (reverse, with the -p forward check) and for
// host arguments (forward, /etc/hosts included). Every reverse or forward DNS query is bounded
// by a deadline and cancelled when it passes; failures are answers ("no name"), never errors.

import { Resolver } from "node:dns";
import { lookup } from "node:dns/promises";
import { isIPv4, isIPv6 } from "node:net";
import { ipv6Groups, unmapIPv4 } from "./ip.ts";

export interface DnsOptions {
  /** Name servers for the Resolver (`"127.0.0.1:5353"` style); default: the system's. */
  servers?: readonly string[];
}

function makeResolver(timeoutMs: number, options: DnsOptions | undefined): Resolver {
  const resolver = new Resolver({ timeout: Math.max(1, Math.ceil(timeoutMs)), tries: 1 });
  if (options?.servers !== undefined) resolver.setServers([...options.servers]);
  return resolver;
}

/** Runs `start` on a fresh Resolver and cancels it at the deadline (giving undefined). */
function withDeadline<T>(
  timeoutMs: number,
  options: DnsOptions | undefined,
  start: (resolver: Resolver, settle: (value: T | undefined) => void) => void,
): Promise<T | undefined> {
  if (!(timeoutMs > 0)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let settled = false;
    let resolver: Resolver | undefined;
    const settle = (value: T | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolver?.cancel();
      resolve(value);
    };
    const timer = setTimeout(() => settle(undefined), timeoutMs);
    try {
      resolver = makeResolver(timeoutMs, options);
      start(resolver, settle);
    } catch {
      settle(undefined);
    }
  });
}

/** Address without `%zone`, IPv4-mapped addresses as dotted quads. */
function plainAddress(ip: string): string {
  return unmapIPv4(ip.split("%")[0] ?? ip);
}

/**
 * The first PTR name of `ip`, lowercased (`Loop.Test` → `loop.test`); undefined on NXDOMAIN,
 * no answer, any error, or when `timeoutMs` passes. IPv4-mapped addresses are looked up as IPv4.
 */
export function reverseName(
  ip: string,
  timeoutMs: number,
  options?: DnsOptions,
): Promise<string | undefined> {
  const address = plainAddress(ip);
  if (!isIPv4(address) && !isIPv6(address)) return Promise.resolve(undefined);
  return withDeadline<string>(timeoutMs, options, (resolver, settle) => {
    resolver.reverse(address, (error, names) => {
      const first = error ? undefined : names[0];
      settle(first === undefined || first === "" ? undefined : first.toLowerCase());
    });
  });
}

function sameAddress(a: string, b: string): boolean {
  if (isIPv4(a) || isIPv4(b)) return a === b;
  const ga = ipv6Groups(a);
  const gb = ipv6Groups(b);
  return ga !== undefined && gb !== undefined && ga.every((group, i) => group === gb[i]);
}

/**
 * The -p paranoid check: true when an A or AAAA record of `name` equals `ip` (IPv4-mapped `ip`
 * is compared with A records). False on mismatch, NXDOMAIN, any error, or after `timeoutMs`.
 */
export async function forwardConfirms(
  name: string,
  ip: string,
  timeoutMs: number,
  options?: DnsOptions,
): Promise<boolean> {
  const address = plainAddress(ip);
  const v4 = isIPv4(address);
  if (!v4 && !isIPv6(address)) return false;
  const found = await withDeadline<boolean>(timeoutMs, options, (resolver, settle) => {
    let pending = 2;
    const answer = (error: Error | null, addresses: string[] | undefined): void => {
      if (!error && addresses?.some((candidate) => sameAddress(plainAddress(candidate), address))) {
        settle(true);
        return;
      }
      pending -= 1;
      if (pending === 0) settle(false);
    };
    resolver.resolve4(name, (error, addresses) => answer(error, v4 ? addresses : undefined));
    resolver.resolve6(name, (error, addresses) => answer(error, addresses));
  });
  return found === true;
}

/**
 * djb's reading of a host made only of digits, dots and brackets (dns_ip4): brackets are
 * ignored, each dot-separated decimal component becomes one byte (mod 256), and the bytes are
 * taken four at a time. So `127.1` gives no address, `[127.0.0.1]` and `0127.0.0.01` give
 * 127.0.0.1, `1.2.3.4.5.6.7.8` gives two addresses. Undefined for any other text.
 */
export function djbNumericAddresses(text: string): string[] | undefined {
  if (!/^[0-9.[\]]+$/.test(text)) return undefined;
  const bytes: number[] = [];
  let code = 0;
  for (const ch of text + ".") {
    if (ch === "[" || ch === "]") continue;
    if (ch === ".") {
      bytes.push(code);
      code = 0;
    } else {
      code = (code * 10 + Number(ch)) % 256;
    }
  }
  const addresses: string[] = [];
  for (let i = 0; i + 4 <= bytes.length; i += 4) addresses.push(bytes.slice(i, i + 4).join("."));
  return addresses;
}

/** What getaddrinfo() reads as an IPv4 address in inet_aton's hex form (`0x7f.1`,
 * `0x7f000001`; parts of digits alone are djbNumericAddresses' already) but djb's programs ask
 * DNS for, which has no such name. `1a2b` is a name: inet_aton takes no hex without `0x`. */
const INET_ATON_FORM = /^(?:0x[\da-f]+|\d+)(?:\.(?:0x[\da-f]+|\d+)){0,3}\.?$/i;

const NOT_FOUND = new Set(["ENOTFOUND", "ENODATA", "EAI_NONAME", "EAI_NODATA"]);

/**
 * All IPv4 and IPv6 addresses of a host name, as getaddrinfo() gives them (/etc/hosts counts),
 * in resolver order without duplicates. An IP literal gives itself; text of only digits, dots
 * and brackets follows djb (see djbNumericAddresses; `127.1` gives none), and so does one of
 * inet_aton's hex forms (`0x7f.1`, `0x7f000001`: none). A name that does not
 * exist gives []; a temporary failure (EAI_AGAIN and the like) is thrown, so that the caller
 * can say "temporarily unable to figure out IP address for NAME".
 */
export async function resolveHostAddresses(name: string): Promise<string[]> {
  const numeric = djbNumericAddresses(name);
  if (numeric !== undefined) return numeric;
  const inner = name.startsWith("[") && name.endsWith("]") ? name.slice(1, -1) : name;
  if (isIPv6(inner) || isIPv4(inner)) return [inner];
  if (name === "" || INET_ATON_FORM.test(name)) return [];
  try {
    const results = await lookup(name, { all: true, order: "verbatim" });
    return [...new Set(results.map((result) => result.address))];
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === "string" && NOT_FOUND.has(code)) return [];
    throw error;
  }
}

/** The addresses of tcpserver's or tcpclient's `host` as parsed (parseServerHost,
 * parseClientHost), only its IPv4 ones with `ipv4Only` (-4): a literal is itself; a name that
 * cannot be resolved, for whatever reason, has none (the caller then says djb's "no IP address
 * for NAME"). */
export async function hostAddresses(
  host: string | { name: string },
  ipv4Only = false,
): Promise<string[]> {
  let all: string[];
  if (typeof host === "string") all = [host];
  else {
    try {
      all = await resolveHostAddresses(host.name);
    } catch {
      all = [];
    }
  }
  return ipv4Only ? all.filter((ip) => isIPv4(ip)) : all;
}
