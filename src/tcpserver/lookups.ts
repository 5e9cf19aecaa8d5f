// What tcpserver learns about a connection's two ends before it decides: TCPLOCALHOST (-l, or
// reverse DNS), TCPREMOTEHOST (reverse DNS, checked forward with -p) and TCPREMOTEINFO (ident),
// in djb's manner, all at once.
import { forwardConfirms, reverseName } from "../net/dns.ts";
import { identQuery } from "../net/ident.ts";
import type { Endpoints } from "./log.ts";
import type { ServerOptions } from "./options.ts";

/** The addresses of a connection (after any PROXY header). */
export interface Ends {
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
}

const DNS_TIMEOUT_MS = 30_000;

/** Whether any lookup is to be made (djb's -l name -H -R make none). */
export function needsLookups(options: ServerOptions): boolean {
  return options.localName === undefined || options.remoteHostLookup || options.ident;
}

/** The ends with no names looked up. */
export function plainEndpoints(c: Ends, options: ServerOptions): Endpoints {
  return {
    localHost: options.localName,
    localIp: c.localIp,
    localPort: c.localPort,
    remoteHost: undefined,
    remoteIp: c.remoteIp,
    remoteInfo: undefined,
    remotePort: c.remotePort,
  };
}

/** The ends with the names the options ask for. */
export async function lookUp(c: Ends, options: ServerOptions): Promise<Endpoints> {
  const [localHost, remoteHost, remoteInfo] = await Promise.all([
    options.localName ?? reverseName(c.localIp, DNS_TIMEOUT_MS),
    options.remoteHostLookup ? remoteName(c.remoteIp, options.paranoid) : undefined,
    options.ident
      ? identQuery({
          localIp: c.localIp,
          localPort: c.localPort,
          remoteIp: c.remoteIp,
          remotePort: c.remotePort,
          timeoutMs: options.identTimeoutMs,
          djbCompat: true,
        })
      : undefined,
  ]);
  return { ...plainEndpoints(c, options), localHost, remoteHost, remoteInfo };
}

/** The client's reverse name; with -p (paranoid) only one that maps back to its address. */
async function remoteName(ip: string, paranoid: boolean): Promise<string | undefined> {
  const name = await reverseName(ip, DNS_TIMEOUT_MS);
  if (name === undefined || !paranoid) return name;
  return (await forwardConfirms(name, ip, DNS_TIMEOUT_MS)) ? name : undefined;
}
