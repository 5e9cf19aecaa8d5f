// Host and port arguments, and the PROTO/TCP*/TCP6* variables of a connection.
//
// Host/port rules follow djb's ucspi-tcp 0.88 (reference section 2.3); the IPv6 environment follows
// Debian's ucspi-tcp-ipv6 (1:0.88-7), observed by running its tcpserver and tcpclient (see
// connectionEnv below for what was seen).

import { readFileSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { networkInterfaces } from "node:os";
import { isIPv4Mapped, isLinkLocal, mapIPv4, unmapIPv4 } from "../net/ip.ts";
import { FatalError } from "./errors.ts";
import { onReload } from "./reload.ts";

/** A host argument: an IP literal to use as is, or a name still to be resolved. */
export type HostSpec = string | { name: string };

/** Text that is exactly four decimal components 0..255 ("127.0.0.1", "010.0.0.1"), normalised. */
function dottedQuad(text: string): string | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!/^[0-9]{1,3}$/.test(part)) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    bytes.push(value);
  }
  return bytes.join(".");
}

function stripBrackets(text: string): string {
  return text.length >= 2 && text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
}

/** An IP literal (IPv4 dotted quad, or IPv6, optionally in brackets), else undefined. */
function ipLiteral(text: string): string | undefined {
  const inner = stripBrackets(text);
  const quad = dottedQuad(inner);
  if (quad !== undefined) return quad;
  if (isIPv6(inner)) return inner;
  return undefined;
}

/**
 * tcpserver's `host`: `0` or `''` is 0.0.0.0; a dotted quad (also `[a.b.c.d]`) is that address;
 * an IPv6 literal (`::`, `::1`, full forms, `[::1]`, `fe80::1%eth0`) is itself without brackets.
 * Anything else, including abbreviations such as `127.1`, is `{ name }` for resolveHostAddresses
 * (which, like djb, gives no address at all for `127.1`).
 */
export function parseServerHost(text: string): HostSpec {
  if (text === "0" || text === "") return "0.0.0.0";
  return ipLiteral(text) ?? { name: text };
}

/** tcpclient's `host`: as parseServerHost, but `0` and `''` mean 127.0.0.1. */
export function parseClientHost(text: string): HostSpec {
  if (text === "0" || text === "") return "127.0.0.1";
  return ipLiteral(text) ?? { name: text };
}

/** Thrown for a port that is neither decimal nor a tcp service name. */
export class UnknownPortError extends FatalError {
  readonly portName: string;
  override name = "UnknownPortError";
  constructor(portName: string) {
    super(`unable to figure out port number for ${portName}`, 111);
    this.portName = portName;
  }
}

/**
 * The tcp entries of an /etc/services text: each name and alias to its port. As with
 * getservbyname(), names are case-sensitive and the first line that mentions a name wins.
 */
export function loadServices(text: string): Map<string, number> {
  const services = new Map<string, number>();
  for (const rawLine of text.split("\n")) {
    const hash = rawLine.indexOf("#");
    const line = hash === -1 ? rawLine : rawLine.slice(0, hash);
    const fields = line.split(/[ \t\r\f\v]+/).filter((field) => field !== "");
    const [name, portProto, ...aliases] = fields;
    if (name === undefined || portProto === undefined) continue;
    const match = /^([0-9]+)\/([^/]+)$/.exec(portProto);
    if (!match || match[2] !== "tcp") continue;
    const port = Number(match[1]);
    if (port > 65535) continue;
    for (const key of [name, ...aliases]) if (!services.has(key)) services.set(key, port);
  }
  return services;
}

const servicesCache = new Map<string, Map<string, number>>();
// SIGHUP: /etc/services is read again on next use (tcpforward's port, per connection).
onReload(() => servicesCache.clear());

/** /etc/services (or `path`), read once on first use; a missing or unreadable file gives no names. */
export function readServices(path = "/etc/services"): ReadonlyMap<string, number> {
  let services = servicesCache.get(path);
  if (services === undefined) {
    let text = "";
    try {
      text = readFileSync(path, "latin1");
    } catch {
      text = "";
    }
    services = loadServices(text);
    servicesCache.set(path, services);
  }
  return services;
}

/**
 * A `port` argument. All-decimal text (also `''`, which djb reads as 0) is taken modulo 65536
 * (`65536` is 0, `65561` is 25); anything else is a tcp service name looked up in `services`
 * (default: /etc/services, read lazily). Throws UnknownPortError (a FatalError, exit 111:
 * `unable to figure out port number for NAME`) for an unknown name.
 */
export function parsePort(text: string, services?: ReadonlyMap<string, number>): number {
  if (/^[0-9]*$/.test(text)) return text === "" ? 0 : Number(BigInt(text) % 65536n);
  const port = (services ?? readServices()).get(text);
  if (port === undefined) throw new UnknownPortError(text);
  return port;
}

/** Split `fe80::1%eth0` into address and zone; the zone is undefined when absent. */
/** -I (Debian's ucspi-tcp-ipv6): a link-local IPv6 address without its own %zone gets
 * `interfaceName`'s; any other address means the same on every interface and is kept as it is. */
export function withInterface(ip: string, interfaceName: string | undefined): string {
  if (interfaceName === undefined || ip.includes("%") || !isLinkLocal(ip)) return ip;
  return `${ip}%${interfaceName}`;
}

/** The zone of `ip` when it names no interface of this host (a number is an interface's index,
 * taken as it is): a link-local address means nothing there, and the kernel would wait. */
export function unknownZone(ip: string): string | undefined {
  const { zone } = splitZone(ip);
  if (zone === undefined || /^[0-9]+$/.test(zone) || zone in networkInterfaces()) return undefined;
  return zone;
}

function splitZone(ip: string): { ip: string; zone: string | undefined } {
  const percent = ip.indexOf("%");
  if (percent === -1) return { ip, zone: undefined };
  return { ip: ip.slice(0, percent), zone: ip.slice(percent + 1) || undefined };
}

export interface ConnectionInfo {
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  /** `-l` value or reverse name; undefined unsets TCPLOCALHOST (an empty string sets it empty). */
  localHost?: string | undefined;
  /** Reverse name (after any -p check); undefined unsets TCPREMOTEHOST. */
  remoteHost?: string | undefined;
  /** Ident answer; undefined unsets TCPREMOTEINFO. */
  remoteInfo?: string | undefined;
  /** The listening socket is IPv6 (Debian ucspi-tcp-ipv6 rules) rather than IPv4 (djb rules). */
  listenerIsV6: boolean;
  /**
   * `server` (default) or `client`. tcpclient sets only the seven TCP* variables, with
   * PROTO=TCP6 for an IPv6 peer (Debian tcpclient), and never touches TCP6*; listenerIsV6 is
   * then ignored.
   */
  role?: "server" | "client";
  /** Interface name for TCP6INTERFACE; default: the `%zone` of the remote (or local) address. */
  interfaceName?: string | undefined;
  /** -6 (Debian's forced IPv6 mode): an IPv4 peer is told as an IPv6 one would be, its
   * addresses in the mapped form (PROTO=TCP6, TCPREMOTEIP=::ffff:127.0.0.1); on the server
   * side the TCP6* set too, as on an IPv6 listener. */
  v6Form?: boolean;
}

export interface ConnectionEnv {
  set: [string, string][];
  unset: string[];
}

/** Every name connectionEnv sets or unsets, for either kind of listener. */
export function connectionVarNames(): string[] {
  const names = new Set<string>();
  for (const listenerIsV6 of [false, true]) {
    const { set, unset } = connectionEnv({
      role: "server",
      listenerIsV6,
      localIp: "::1",
      localPort: 1,
      remoteIp: "::1",
      remotePort: 1,
    });
    for (const [name] of set) names.add(name);
    for (const name of unset) names.add(name);
  }
  return [...names];
}

/**
 * The environment changes for one connection.
 *
 * IPv4 listener (djb 0.88): PROTO=TCP and exactly the seven TCP* variables, each set or unset
 * (so inherited values never leak); TCP6* variables are not touched.
 *
 * IPv6 listener (Debian ucspi-tcp-ipv6 1:0.88-7 tcpserver, observed):
 *   - IPv6 client (`::1`, `fd00::2`, link-local): PROTO=TCP6; TCPLOCALIP, TCPLOCALPORT,
 *     TCPLOCALHOST, TCPREMOTEIP, TCPREMOTEPORT, TCPREMOTEHOST, TCPREMOTEINFO and the same seven
 *     as TCP6LOCALIP ... TCP6REMOTEINFO with identical values (compact IPv6 text such as `::1`);
 *     TCP6INTERFACE=eth0 only for a scoped (link-local) peer.
 *   - IPv4 client on a dual-stack listener (or a `::ffff:127.0.0.1` one): PROTO=TCP; TCP*IP are
 *     dotted quads (127.0.0.1) while TCP6LOCALIP/TCP6REMOTEIP are the mapped form
 *     (::ffff:127.0.0.1); ports, hosts and info are the same in both sets.
 *   - HOST/INFO variables of both sets are set or unset together.
 * Deliberate difference: Debian leaves an inherited TCP6INTERFACE alone when the peer has no
 * zone; here it is unset, in keeping with djb's "set or unset" rule for the other variables.
 */
export function connectionEnv(info: ConnectionInfo): ConnectionEnv {
  const set: [string, string][] = [];
  const unset: string[] = [];
  eachConnectionVar(info, (name, value) => {
    if (value === undefined) unset.push(name);
    else set.push([name, value]);
  });
  return { set, unset };
}

/** connectionEnv's changes, each given to `put` (undefined: unset) as it is made: tcpserver
 * writes them straight into the connection's environment, with no lists in between. */
export function eachConnectionVar(
  info: ConnectionInfo,
  put: (name: string, value: string | undefined) => void,
): void {
  const local = splitZone(info.localIp);
  const remote = splitZone(info.remoteIp);
  const localPort = String(info.localPort);
  const remotePort = String(info.remotePort);

  const v4Peer = isIPv4(remote.ip) || isIPv4Mapped(remote.ip);
  if (info.v6Form && v4Peer) {
    local.ip = mapIPv4(unmapIPv4(local.ip));
    remote.ip = mapIPv4(unmapIPv4(remote.ip));
  }
  const remoteIsV4 = v4Peer && !info.v6Form;
  const localV4 = unmapIPv4(local.ip);
  const remoteV4 = unmapIPv4(remote.ip);

  if (info.role === "client" || !(info.listenerIsV6 || info.v6Form)) {
    const v6Client = info.role === "client" && !remoteIsV4;
    put("PROTO", v6Client ? "TCP6" : "TCP");
    put("TCPLOCALIP", v6Client ? local.ip : localV4);
    put("TCPLOCALPORT", localPort);
    put("TCPLOCALHOST", info.localHost);
    put("TCPREMOTEIP", v6Client ? remote.ip : remoteV4);
    put("TCPREMOTEPORT", remotePort);
    put("TCPREMOTEHOST", info.remoteHost);
    put("TCPREMOTEINFO", info.remoteInfo);
    return;
  }

  const localIp = remoteIsV4 ? localV4 : local.ip;
  const remoteIp = remoteIsV4 ? remoteV4 : remote.ip;
  const local6 = remoteIsV4 ? mapIPv4(localV4) : local.ip;
  const remote6 = remoteIsV4 ? mapIPv4(remoteV4) : remote.ip;
  const zone = remoteIsV4 ? undefined : (info.interfaceName ?? remote.zone ?? local.zone);

  put("PROTO", remoteIsV4 ? "TCP" : "TCP6");
  put("TCPLOCALIP", localIp);
  put("TCP6LOCALIP", local6);
  put("TCPLOCALPORT", localPort);
  put("TCP6LOCALPORT", localPort);
  put("TCPLOCALHOST", info.localHost);
  put("TCP6LOCALHOST", info.localHost);
  put("TCP6INTERFACE", zone);
  put("TCPREMOTEIP", remoteIp);
  put("TCP6REMOTEIP", remote6);
  put("TCPREMOTEPORT", remotePort);
  put("TCP6REMOTEPORT", remotePort);
  put("TCPREMOTEHOST", info.remoteHost);
  put("TCP6REMOTEHOST", info.remoteHost);
  put("TCPREMOTEINFO", info.remoteInfo);
  put("TCP6REMOTEINFO", info.remoteInfo);
}
