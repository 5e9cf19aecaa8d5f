// tls-everywhere's argv → options.
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../ucspi/getopt.ts";

export const USAGE =
  "tls-everywhere [ --dry-run | --remove ] [ --ports list ] [ --exclude list ] [ --listen port ] [ --mark n ] [ --table n ] [ --silence ms ] [ --state dir ] [ --ipv4-only ]";

/** Ports as nftables writes a set: single ports and ranges, each checked. */
export type PortList = string[];

export interface EverywhereOptions {
  dryRun: boolean;
  /** Take out what a tls-everywhere killed with SIGKILL left behind, and exit. */
  remove: boolean;
  /** The ports whose connections are diverted to the chain. */
  ports: PortList;
  /** Never diverted (beside the chain's own port): ssh by default, so a mistake cannot lock
   * an admin out. */
  exclude: PortList;
  /** The chain's port (never diverted). */
  listen: number;
  /** Diverted connections get this mark; the chain's own connections to services mark + 1. */
  mark: number;
  /** The policy-routing table that delivers both marks to this host. */
  table: number;
  /** tls-sniff -t: how long a silent client waits before it is taken for plaintext. */
  silenceMs: number;
  /** Where the self-signed fallback certificate is kept when CERTFILE is not set. */
  stateDir: string;
  ipv6: boolean;
}

const LONG = [
  "dry-run",
  "remove",
  "ports=",
  "exclude=",
  "listen=",
  "mark=",
  "table=",
  "silence=",
  "state=",
  "ipv4-only",
];

export function parseEverywhereArgs(args: readonly string[]): EverywhereOptions {
  const { options, rest } = getopt(args, { flags: "", values: "", long: LONG });
  if (rest.length > 0) throw new UsageError(`unexpected '${rest.join(" ")}'`);
  const o: EverywhereOptions = {
    dryRun: false,
    remove: false,
    ports: ["1-65535"],
    exclude: ["22"],
    listen: 8999,
    mark: 0x7e1,
    table: 7001,
    silenceMs: 1000,
    stateDir: "/var/lib/tls-everywhere",
    ipv6: true,
  };
  for (const { name, value } of options) {
    switch (name) {
      case "dry-run":
        o.dryRun = true;
        break;
      case "remove":
        o.remove = true;
        break;
      case "ports":
        o.ports = portList(value, name);
        break;
      case "exclude":
        o.exclude = value === "" ? [] : portList(value, name);
        break;
      case "listen":
        o.listen = number(value, name, 1, 65535);
        break;
      case "mark":
        o.mark = number(value, name, 1, 0xfffffffe);
        break;
      case "table":
        o.table = number(value, name, 1, 0xfffffeff);
        break;
      case "silence":
        o.silenceMs = number(value, name, 1, 60_000);
        break;
      case "state":
        o.stateDir = value;
        break;
      case "ipv4-only":
        o.ipv6 = false;
        break;
    }
  }
  if (o.dryRun && o.remove) throw new UsageError("--dry-run and --remove: give one");
  return o;
}

function number(value: string, option: string, min: number, max: number): number {
  const n = /^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max))
    throw new UsageError(`--${option} needs a number from ${min} to ${max}, not '${value}'`);
  return n;
}

/** `25,80,8000-8100` → ["25", "80", "8000-8100"]. */
function portList(value: string, option: string): PortList {
  const items = value.split(",");
  for (const item of items) {
    const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(item);
    const low = Number(m?.[1]);
    const high = m?.[2] === undefined ? low : Number(m[2]);
    if (!m || low < 1 || high > 65535 || high < low)
      throw new UsageError(`--${option}: not a port or a range of ports: '${item}'`);
  }
  return items;
}
