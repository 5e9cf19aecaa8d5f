// tcpserver --proxy: which sources may send a PROXY header, and reading that header off the
// socket without taking a byte of what follows it (the program gets the socket itself).
import { BlockList, isIP } from "node:net";
import { unmapIPv4 } from "../net/ip.ts";
import { native } from "../ucspi/native.ts";
import { decodeProxyHeader } from "../proxy/index.ts";
import type { ProxyHeader } from "../proxy/index.ts";
import { UsageError, causeText } from "../ucspi/errors.ts";

const MAX_HEADER = 65_551;

/** The trusted proxies of --proxy-from: addresses or prefixes, IPv4 or IPv6. */
export function trustedProxies(list: readonly string[]): BlockList {
  const trusted = new BlockList();
  for (const entry of list) {
    const [address = "", bits] = entry.split("/");
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    const prefix = bits === undefined ? max : Number(bits);
    if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max || bits === "")
      throw new UsageError(`--proxy-from: not an address or prefix: '${entry}'`);
    trusted.addSubnet(address, prefix, family === 4 ? "ipv4" : "ipv6");
  }
  return trusted;
}

export function isTrusted(trusted: BlockList, ip: string): boolean {
  const plain = unmapIPv4(ip);
  return trusted.check(plain, isIP(plain) === 6 ? "ipv6" : "ipv4");
}

export type HeaderResult = { header: ProxyHeader } | { error: string };

/**
 * Reads one PROXY v1/v2 header from fd. Bytes are peeked, and only those that are certainly
 * part of the header are taken: a strict prefix of a header while it is incomplete, exactly
 * its length once it is whole.
 */
export function readProxyHeader(fd: number, timeoutMs: number): Promise<HeaderResult> {
  const n = native();
  let taken = Buffer.alloc(0);
  return new Promise((resolve) => {
    let waiting: number | undefined;
    const timer = setTimeout(() => {
      if (waiting !== undefined) n.cancelWait(fd, waiting);
      resolve({ error: "timed out waiting for the PROXY header" });
    }, timeoutMs);
    const finish = (result: HeaderResult) => {
      clearTimeout(timer);
      resolve(result);
    };
    const attempt = () => {
      waiting = undefined;
      let peeked: Buffer | undefined | null;
      try {
        peeked = n.recv(fd, MAX_HEADER - taken.length, false);
      } catch (error) {
        return finish({ error: `unable to read the PROXY header: ${causeText(error)}` });
      }
      if (peeked === null) return finish({ error: "connection closed before the PROXY header" });
      if (peeked === undefined) {
        waiting = n.whenReadable(fd, attempt);
        return;
      }
      const seen = Buffer.concat([taken, peeked]);
      const decoded = decodeProxyHeader(seen);
      if (decoded.state === "error") return finish({ error: badHeader(seen, decoded.reason) });
      if (decoded.state === "ok") {
        n.recv(fd, decoded.length - taken.length, true);
        return finish({ header: decoded.header });
      }
      n.recv(fd, peeked.length, true);
      taken = seen;
      waiting = n.whenReadable(fd, attempt);
    };
    attempt();
  });
}

/** A TLS record's first byte (handshake): a client that is no proxy, or a proxy that sends no
 * header, in front of a TLS service behind --proxy. */
const HANDSHAKE_RECORD = 0x16;

/** The warning's cause; one that starts a TLS handshake instead says so. */
function badHeader(seen: Buffer, reason: string): string {
  if (seen[0] === HANDSHAKE_RECORD)
    return "bad PROXY header: a TLS handshake came in its place (a client that is not a proxy, or a proxy that sends none)";
  return `bad PROXY header: ${reason}`;
}
