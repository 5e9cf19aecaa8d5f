// tcpclient's argv → options: djb's letters and defaults, and Debian ucspi-tcp-ipv6's -4, -6, -I.
import { isIP } from "node:net";
import { UsageError } from "../ucspi/errors.ts";
import { getopt, scanUnsigned } from "../cli/getopt.ts";
import { applyCommonOption, commonDefaults, hostPortProgram } from "../cli/tcp-options.ts";
import type { CommonTcpOptions } from "../cli/tcp-options.ts";
import { secondsAsTimerMs } from "../ucspi/timers.ts";

/** Debian's ucspi-tcp-ipv6 usage line, letter for letter. */
export const USAGE =
  "tcpclient [ -46hHrRdDqQv ] [ -i localip ] [ -p localport ] [ -T timeoutconn ] [ -l localname ] [ -t timeoutinfo ] [ -I interface ] host port program";

export interface ClientOptions extends CommonTcpOptions {
  localIp: string | undefined;
  /** -p as djb's scan_ulong reads it into a 16-bit port (digits only, no service names); 0 or
   * undefined: any port. */
  localPort: number | undefined;
  /** Per-address connect timeouts: the first pass, then a second pass over those that timed out. */
  connectTimeoutsMs: [number, number];
  host: string;
  port: string;
  program: string[];
}

export function parseClientArgs(args: readonly string[]): ClientOptions {
  const { options, rest } = getopt(args, { flags: "46hHrRdDqQv", values: "ipTltI" });
  const o: ClientOptions = {
    ...commonDefaults(),
    localIp: undefined,
    localPort: undefined,
    connectTimeoutsMs: [2000, 58_000],
    host: "",
    port: "",
    program: [],
  };
  for (const { name, value } of options) {
    if (applyCommonOption(o, name, value)) continue;
    switch (name) {
      case "i":
        // djb's: an address that ip4_scan cannot read is a usage error (ours reads IPv6 too).
        if (isIP(value) === 0) throw new UsageError("");
        o.localIp = value;
        break;
      case "p":
        o.localPort = scanPort(value);
        break;
      case "T":
        o.connectTimeoutsMs = parseTimeouts(value);
        break;
    }
  }
  Object.assign(o, hostPortProgram(rest));
  return o;
}

/** `x+y` or `x`, in seconds, as djb's tcpclient reads -T. */
function parseTimeouts(text: string): [number, number] {
  const plus = text.indexOf("+");
  const first = scanUnsigned(text);
  const second = plus >= 0 ? scanUnsigned(text.slice(plus + 1)) : 0;
  return [secondsAsTimerMs(first), secondsAsTimerMs(second)];
}

/** djb's `scan_ulong(optarg,&u); portlocal = u;`: leading digits (none is 0), modulo 65536. */
function scanPort(text: string): number {
  const digits = /^[0-9]*/.exec(text)?.[0] ?? "";
  return digits === "" ? 0 : Number(BigInt(digits) % 65536n);
}
