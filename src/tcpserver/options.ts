// tcpserver's argv → options: djb's letters and defaults, plus our long-named extensions.
import { parseMetricsAddress } from "../metrics/address.ts";
import type { MetricsAddress } from "../metrics/address.ts";
import { UsageError } from "../ucspi/errors.ts";
import { toBytes } from "../ucspi/env.ts";
import { getopt, scanUnsigned } from "../cli/getopt.ts";
import { applyCommonOption, commonDefaults, hostPortProgram } from "../cli/tcp-options.ts";
import type { CommonTcpOptions } from "../cli/tcp-options.ts";
import { AUTO_WORKERS, autoWorkers } from "../cli/workers.ts";

/** Debian's ucspi-tcp-ipv6 usage line, letter for letter. */
export const USAGE =
  "tcpserver [ -461UXpPhHrRoOdDqQv ] [ -c limit ] [ -x rules.cdb ] [ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] [ -t timeout ] [ -I interface ] host port program";

/** Our options beyond djb's, for --help (djb's usage line above stays his). */
export const EXTENSIONS =
  "[ -C n ] [ --proxy [ --proxy-from list ] ] [ --transparent | --redirected ] [ --log text|json ] [ --workers n ] [ --drain seconds ] [ --metrics address ]";

export interface ServerOptions extends CommonTcpOptions {
  limit: number;
  perIpLimit: number | undefined;
  rulesFile: string | undefined;
  missingRulesAllow: boolean;
  /** -B, as a byte string: its UTF-8 bytes, written as they are (djb writes argv's bytes). */
  banner: string | undefined;
  gid: number | undefined;
  uid: number | undefined;
  printPort: boolean;
  backlog: number;
  paranoid: boolean;
  killIpOptions: boolean;
  proxy: boolean;
  /** IP_TRANSPARENT on the listener: connections TPROXY diverts here, for any address. */
  transparent: boolean;
  /** TCPLOCALIP/TCPLOCALPORT from NAT's original destination (REDIRECT), when there is one. */
  originalDestination: boolean;
  proxyFrom: string[];
  logFormat: "text" | "json";
  workers: number;
  /** Set in the extra processes of --workers: this one's index (1..workers-1). */
  workerIndex: number;
  /** Set in those of a socket-activated tcpserver: their fd 3 is its listener, shared. */
  workerSharesListener: boolean;
  /** --drain: on SIGTERM, how long running connections may go on (undefined: djb's exit). */
  drainSeconds: number | undefined;
  /** --metrics: where scrapes are answered (undefined: no metrics at all). */
  metrics: MetricsAddress | undefined;
  host: string;
  port: string;
  program: string[];
}

const LONG = [
  "proxy",
  "transparent",
  "redirected",
  "proxy-from=",
  "log=",
  "workers=",
  "per-ip-limit=",
  "worker=",
  "worker-shares-listener",
  "drain=",
  "metrics=",
];

/** `env` is read only for -U, at the point where -U stands, as djb's getopt loop does. */
export function parseServerArgs(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): ServerOptions {
  const { options, rest } = getopt(args, {
    flags: "461UXpPhHrRoOdDqQv",
    values: "cxBgubltCI",
    long: LONG,
  });
  const o: ServerOptions = {
    ...commonDefaults(),
    limit: 40,
    perIpLimit: undefined,
    rulesFile: undefined,
    missingRulesAllow: false,
    banner: undefined,
    gid: undefined,
    uid: undefined,
    printPort: false,
    backlog: 20,
    paranoid: false,
    killIpOptions: true,
    proxy: false,
    transparent: false,
    originalDestination: false,
    proxyFrom: ["127.0.0.0/8", "::1/128"],
    logFormat: "text",
    workers: 1,
    workerIndex: 0,
    workerSharesListener: false,
    drainSeconds: undefined,
    metrics: undefined,
    host: "",
    port: "",
    program: [],
  };
  let workersAuto = false;
  for (const { name, value } of options) {
    if (applyCommonOption(o, name, value)) continue;
    switch (name) {
      case "c":
        // djb's scan: leading digits count ("40x" is 40). None, or 0, would be a server that
        // never accepts (djb's waits forever, silently): refused instead.
        o.limit = scanUnsigned(value);
        if (o.limit < 1) throw new UsageError(`-c needs a positive number, not '${value}'`);
        break;
      case "C":
      case "per-ip-limit":
        o.perIpLimit = positive(value, name);
        break;
      case "x":
        o.rulesFile = value;
        break;
      case "X":
        o.missingRulesAllow = true;
        break;
      case "B":
        o.banner = toBytes(value);
        break;
      case "g":
        o.gid = systemId(value, "-g");
        break;
      case "u":
        o.uid = systemId(value, "-u");
        break;
      case "U":
        // Only a variable that is set counts, as djb's `if (x) scan_ulong(x,...)`: -u 1000 -U
        // with no UID keeps 1000 (not root's 0).
        if (env["GID"] !== undefined) o.gid = systemId(env["GID"], "GID (for -U)");
        if (env["UID"] !== undefined) o.uid = systemId(env["UID"], "UID (for -U)");
        break;
      case "1":
        o.printPort = true;
        break;
      case "b":
        o.backlog = scanUnsigned(value);
        break;
      case "p":
        o.paranoid = true;
        break;
      case "P":
        o.paranoid = false;
        break;
      case "o":
        o.killIpOptions = false;
        break;
      case "O":
        o.killIpOptions = true;
        break;
      case "proxy":
        o.proxy = true;
        break;
      case "transparent":
        o.transparent = true;
        o.originalDestination = true;
        break;
      case "redirected":
        o.originalDestination = true;
        break;
      case "proxy-from":
        o.proxyFrom = value.split(",").filter(Boolean);
        break;
      case "log":
        if (value !== "text" && value !== "json")
          throw new UsageError(`--log must be text or json, not ${value}`);
        o.logFormat = value;
        break;
      case "workers":
        workersAuto = value === AUTO_WORKERS;
        if (!workersAuto) o.workers = positive(value, name);
        break;
      case "worker":
        o.workerIndex = positive(value, name);
        break;
      case "worker-shares-listener":
        o.workerSharesListener = true;
        break;
      case "drain":
        if (!/^[0-9]{1,9}$/.test(value))
          throw new UsageError(`--drain needs a number of seconds, not '${value}'`);
        o.drainSeconds = Number(value);
        break;
      case "metrics":
        o.metrics = parseMetricsAddress(value);
        break;
    }
  }
  if (workersAuto) o.workers = autoWorkers(o.limit);
  // A worker with no connection of its own would still listen, and the kernel would hand it
  // its share of clients, never to be accepted.
  if (o.workers > o.limit)
    throw new UsageError(`--workers ${o.workers} needs -c ${o.workers} or more, not -c ${o.limit}`);
  Object.assign(o, hostPortProgram(rest));
  return o;
}

/** The largest user or group id: (uid_t)-1 means "no change" to setuid and setgid. */
const MAX_ID = 4294967294;

/** A user or group id as djb's scan_ulong reads it (leading digits, none is 0); one past what
 * a uid_t holds is refused (djb's truncates it to 32 bits and runs as whoever that is). */
function systemId(value: string, what: string): number {
  const id = scanUnsigned(value);
  if (id > MAX_ID) throw new UsageError(`${what} needs an id from 0 to ${MAX_ID}, not '${value}'`);
  return id;
}

function positive(value: string, option: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(value))
    throw new UsageError(
      `${option.length > 1 ? "--" : "-"}${option} needs a positive number, not '${value}'`,
    );
  return Number(value);
}

/** The share of -c that worker `index` of `workers` gets; the first ones take the remainder. */
export function workerLimit(limit: number, workers: number, index: number): number {
  const share = Math.floor(limit / workers);
  return share + (index < limit % workers ? 1 : 0);
}
