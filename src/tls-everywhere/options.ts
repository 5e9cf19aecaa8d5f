// tls-everywhere's argv → options.
import { UsageError } from "../ucspi/errors.ts";
import { addressText, parseMetricsAddress } from "../metrics/address.ts";
import type { MetricsAddress } from "../metrics/address.ts";
import { block } from "../cli/block.ts";
import { getopt } from "../cli/getopt.ts";
import { AUTO_WORKERS, autoWorkers } from "../cli/workers.ts";

export const USAGE =
  "tls-everywhere [ --dry-run ] [ --remove ] [ --ports list ] [ --exclude list ] [ --listen port ] [ --mark n ] [ --table n ] [ --silence ms ] [ --limit n ] [ --workers n ] [ --state dir ] [ --ipv4-only ] [ --metrics address ] [ --port port { prog... } ]...";

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
  /** tcpserver -c of each chain: connections at once. */
  limit: number;
  /** tcpserver --workers of each chain: processes on the same port, for more cores. */
  workers: number;
  /** Where the self-signed fallback certificate is kept when CERTFILE is not set. */
  stateDir: string;
  ipv6: boolean;
  /** tcpserver --metrics of the main chain; the --port chains' follow it (chainMetrics). */
  metrics: MetricsAddress | undefined;
  /** Ports that get a chain of their own instead (port 25 through starttls-wrapper, say). */
  overrides: PortChain[];
}

export interface PortChain {
  port: number;
  /** What tcpserver runs for it, as given (chain.ts adds --transparent and the mark to each
   * `tcpforward` to where the client asked). */
  chain: string[];
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
  "limit=",
  "workers=",
  "ipv4-only",
  "metrics=",
];

type NumberField = "listen" | "mark" | "table" | "silenceMs" | "limit";

/** --workers at most (auto too). */
const MOST_WORKERS = 64;

/** The numeric options: the field each sets, and its bounds. */
const NUMBERS: Record<string, [NumberField, number, number] | undefined> = {
  listen: ["listen", 1, 65535],
  mark: ["mark", 1, 0xfffffffe],
  table: ["table", 1, 0xfffffeff],
  silence: ["silenceMs", 1, 60_000],
  limit: ["limit", 1, 1_000_000],
};

/** Routing tables of the kernel's own (0, unspec, is below --table's bounds): routes of ours in
 * them would change how the whole host routes, and their removal would take out the host's. */
const RESERVED_TABLES: Record<number, string | undefined> = {
  253: "default",
  254: "main",
  255: "local",
};

/** `--port N { prog... }` blocks, taken out of argv before the options are read. */
function takeOverrides(args: readonly string[]): { args: string[]; overrides: PortChain[] } {
  const rest: string[] = [];
  const overrides: PortChain[] = [];
  for (let i = 0; i < args.length; i++) {
    const word = args[i] ?? "";
    if (word !== "--port" && !word.startsWith("--port=")) {
      rest.push(word);
      continue;
    }
    const value = word === "--port" ? args[++i] : word.slice("--port=".length);
    const port = number(value ?? "", "port", 1, 65535);
    if (overrides.some((o) => o.port === port)) throw new UsageError(`--port ${port}: given twice`);
    const [chain, end] = block(args, i + 1, `--port ${port}`);
    overrides.push({ port, chain });
    i = end;
  }
  return { args: rest, overrides };
}

export function parseEverywhereArgs(argv: readonly string[]): EverywhereOptions {
  const { args, overrides } = takeOverrides(argv);
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
    limit: 1000,
    workers: 1,
    stateDir: "/var/lib/tls-everywhere",
    ipv6: true,
    metrics: undefined,
    overrides,
  };
  let ports: PortList | undefined;
  let exclude: PortList | undefined;
  let workersAuto = false;
  for (const { name, value } of options) {
    switch (name) {
      case "dry-run":
        o.dryRun = true;
        break;
      case "remove":
        o.remove = true;
        break;
      // Repeated, the lists add up (the unit's own options and TLS_EVERYWHERE_ARGS, say): the
      // first one given replaces the default.
      case "ports":
        o.ports = [...(ports ?? []), ...portList(value, name)];
        ports = o.ports;
        break;
      case "exclude":
        o.exclude = [...(exclude ?? []), ...(value === "" ? [] : portList(value, name))];
        exclude = o.exclude;
        break;
      case "state":
        o.stateDir = value;
        break;
      case "ipv4-only":
        o.ipv6 = false;
        break;
      case "metrics":
        o.metrics = parseMetricsAddress(value);
        break;
      case "workers":
        workersAuto = value === AUTO_WORKERS;
        if (!workersAuto) o.workers = number(value, name, 1, MOST_WORKERS);
        break;
      default: {
        const spec = NUMBERS[name];
        if (spec) o[spec[0]] = number(value, name, spec[1], spec[2]);
      }
    }
  }
  if (workersAuto) o.workers = autoWorkers(Math.min(MOST_WORKERS, o.limit));
  // tcpserver's own rule, checked here so that --dry-run says it too and no chain starts for it.
  if (o.workers > o.limit)
    throw new UsageError(
      `--workers ${o.workers} needs --limit ${o.workers} or more, not ${o.limit}`,
    );
  const reserved = RESERVED_TABLES[o.table];
  if (reserved) throw new UsageError(`--table ${o.table}: that is the kernel's ${reserved} table`);
  for (const { port } of o.overrides)
    if (port >= o.listen && port <= chainPort(o, o.overrides.length - 1))
      throw new UsageError(`--port ${port}: that is a chain's own port`);
  return o;
}

/** The port the chain of override `index` listens on: right after the main chain's. */
export function chainPort(o: Pick<EverywhereOptions, "listen">, index: number): number {
  return o.listen + 1 + index;
}

/** Where the chain of override `index` (-1: the main chain) answers scrapes: the main chain's
 * address, each override's on the ports after it in --port order (host:port), or at the path
 * with `.PORT` added (a UNIX socket). */
export function chainMetrics(o: EverywhereOptions, index: number): string | undefined {
  const address = o.metrics;
  if (!address || index < 0) return address && addressText(address);
  if ("path" in address) return `${address.path}.${o.overrides[index]?.port ?? index}`;
  return addressText({ host: address.host, port: address.port + 1 + index });
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
