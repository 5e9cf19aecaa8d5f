// tcpforward's argv → options.
import { optionNumber } from "../tls/options.ts";
import { parsePort } from "../ucspi/address.ts";
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../cli/getopt.ts";
import { block } from "../cli/block.ts";
import { secondsAsTimerMs } from "../ucspi/timers.ts";

export const USAGE =
  "tcpforward [ -q ] [ -v verbosity ] [ -t timeout ] [ -i localip ] [ --transparent [ --source-ports low-high ] ] [ --proxy ] [ --mark mark ] [ --if-plain { prog... } ] [ host port | /path/of/socket ]";

export interface ForwardOptions {
  verbosity: number;
  /** How long the connect to the service may take (ms). */
  connectTimeoutMs: number;
  /** The address the connection to the service comes from; undefined: the kernel's choice. */
  localIp: string | undefined;
  /** Full transparency: from the client's own address (IP_TRANSPARENT). */
  transparent: boolean;
  /** A PROXY v2 header with the client's addresses first. */
  proxy: boolean;
  /** With transparent: where the port of the connection from the client's address is picked
   * (low, high): below the ephemeral ranges clients use (Linux 32768-60999, Windows and macOS
   * 49152-65535), so it cannot be the port of that client's own connection to the same
   * service, which this host holds too. */
  sourcePorts: [number, number];
  /** SO_MARK of the connection to the service; 0: none. */
  mark: number;
  /** Where to; undefined: where the client asked to go (TCPLOCALIP, TCPLOCALPORT). */
  host: string | undefined;
  port: number | undefined;
  /** A service on a UNIX socket instead: its path. */
  socket: string | undefined;
  /** --if-plain { prog... }: a TLS client goes to the service as it is only if the service
   * speaks TLS itself; if it does not, prog runs on the client's connection instead. */
  ifPlain: string[] | undefined;
}

/** `--if-plain { prog... }`, taken out of argv before the options are read. */
function takeIfPlain(args: readonly string[]): { args: string[]; ifPlain?: string[] } {
  const at = args.indexOf("--if-plain");
  if (at < 0) return { args: [...args] };
  const [ifPlain, end] = block(args, at + 1, "--if-plain");
  return { args: [...args.slice(0, at), ...args.slice(end + 1)], ifPlain };
}

const LONG = ["transparent", "proxy", "mark=", "source-ports="];

export function parseForwardArgs(argv: readonly string[]): ForwardOptions {
  const { args, ifPlain } = takeIfPlain(argv);
  const { options, rest } = getopt(args, { flags: "q", values: "vti", long: LONG });
  const o: ForwardOptions = {
    verbosity: 1,
    connectTimeoutMs: 10_000,
    localIp: undefined,
    transparent: false,
    proxy: false,
    sourcePorts: [1024, 32767],
    mark: 0,
    host: undefined,
    port: undefined,
    socket: undefined,
    ifPlain,
  };
  let sourcePortsGiven = false;
  let timeoutGiven = false;
  for (const { name, value } of options) {
    switch (name) {
      case "q":
        o.verbosity = 0;
        break;
      case "v":
        o.verbosity = optionNumber(value, name);
        break;
      case "t":
        o.connectTimeoutMs = secondsAsTimerMs(optionNumber(value, name));
        if (o.connectTimeoutMs <= 0) throw new UsageError("-t: must be more than 0");
        timeoutGiven = true;
        break;
      case "i":
        o.localIp = value;
        break;
      case "transparent":
        o.transparent = true;
        break;
      case "proxy":
        o.proxy = true;
        break;
      case "source-ports": {
        const m = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(value);
        const low = Number(m?.[1]);
        const high = Number(m?.[2]);
        if (!m || low < 1 || high > 65535 || high < low)
          throw new UsageError(`--source-ports needs a range of ports low-high, not '${value}'`);
        o.sourcePorts = [low, high];
        sourcePortsGiven = true;
        break;
      }
      case "mark":
        if (!/^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$/.test(value) || Number(value) > 0xffffffff)
          throw new UsageError(`--mark needs a number up to 0xffffffff, not '${value}'`);
        o.mark = Number(value);
        break;
    }
  }
  if (o.transparent && o.localIp !== undefined)
    throw new UsageError("--transparent and -i both choose the source address: give one");
  // Only a connection from the client's address picks its port: any other gets the kernel's.
  if (sourcePortsGiven && !o.transparent)
    throw new UsageError(
      "--source-ports is for --transparent: without it the kernel picks the port",
    );
  if (rest.length === 1 && rest[0]?.startsWith("/")) {
    const tcpOnly = [
      [o.transparent, "--transparent"],
      [o.localIp !== undefined, "-i"],
      [o.mark !== 0, "--mark"],
      [sourcePortsGiven, "--source-ports"],
      // A UNIX socket's connect is over when it returns: there is nothing to time.
      [timeoutGiven, "-t"],
      [ifPlain !== undefined, "--if-plain"],
    ].find(([given]) => given);
    if (tcpOnly) throw new UsageError(`${String(tcpOnly[1])} is for TCP, not a UNIX socket`);
    o.socket = rest[0];
    return o;
  }
  if (rest.length === 1 || rest.length > 2)
    throw new UsageError(
      `give a host and a port, a UNIX socket's path, or neither, not '${rest.join(" ")}'`,
    );
  if (rest.length === 2) {
    o.host = rest[0];
    o.port = portOf(rest[1] ?? "");
  }
  return o;
}

/** A number or a service name (/etc/services); never 0. */
function portOf(text: string): number {
  const port = parsePort(text);
  if (port === 0) throw new UsageError(`port 0 is no service's port`);
  return port;
}
