// --metrics ADDRESS: where tcpserver answers scrapes. An IP address and a port (`127.0.0.1:9100`,
// `[::1]:9100`; a name such as `localhost` is resolved), or the path of a UNIX socket
// (`/run/tcpserver/metrics.sock`). No default address: a listener nobody asked for is not opened.
import { isIP } from "node:net";
import { UsageError } from "../ucspi/errors.ts";

export type MetricsAddress = { path: string } | { host: string; port: number };

export function parseMetricsAddress(text: string): MetricsAddress {
  if (text.startsWith("/")) return { path: text };
  const bracketed = /^\[([^\]]+)\]:([0-9]{1,5})$/.exec(text);
  const plain = /^([^:[\]]+):([0-9]{1,5})$/.exec(text);
  const [, host = "", port = ""] = bracketed ?? plain ?? [];
  const number = Number(port);
  if (host === "" || number > 65535 || (bracketed && isIP(host) !== 6))
    throw new UsageError(
      `--metrics needs host:port, [ipv6]:port or the absolute path of a socket, not '${text}'`,
    );
  return { host, port: number };
}

/** The address as the log lines and errors name it. */
export function addressText(address: MetricsAddress): string {
  if ("path" in address) return address.path;
  return address.host.includes(":")
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}
