// A PROXY v2 header for a connection as tcpserver described it in the environment: the
// client's address and the one it connected to (TCP*, or TCP6* for IPv6), so that the service
// the header goes to learns the real client.
import { isIP } from "node:net";
import { tcpVar } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import type { ProxyTlv } from "./types.ts";
import { encodeProxyV2 } from "./v2.ts";

/** The client's and the local addresses in env, or undefined when env lacks one. */
function endpoints(env: Readonly<Env>) {
  const remote = tcpVar(env, "REMOTEIP");
  const local = tcpVar(env, "LOCALIP");
  const remotePort = Number(tcpVar(env, "REMOTEPORT"));
  const localPort = Number(tcpVar(env, "LOCALPORT"));
  if (!remote || !local || !(remotePort > 0) || !(localPort > 0)) return undefined;
  const family = isIP(remote) === 6 || isIP(local) === 6 ? "tcp6" : "tcp4";
  // A v4 address beside a v6 one is written as v6 (mapped): one family per header.
  const as = (ip: string) => (family === "tcp6" && isIP(ip) === 4 ? `::ffff:${ip}` : ip);
  return {
    family,
    source: { ip: as(remote), port: remotePort },
    destination: { ip: as(local), port: localPort },
  } as const;
}

/** The header: PROXY with env's addresses, or LOCAL (no addresses) when env has none. */
export function envProxyHeader(env: Readonly<Env>, tlvs: ProxyTlv[] = []): Buffer {
  const ends = endpoints(env);
  return ends
    ? encodeProxyV2({ command: "proxy", ...ends, tlvs })
    : encodeProxyV2({ command: "local", family: "unknown", tlvs });
}
