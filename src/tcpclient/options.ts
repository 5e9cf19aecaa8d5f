// tcpclient's argv → options: djb's letters and defaults, plus -4/-6.
import { UsageError } from "../ucspi/errors.ts";
import { getopt, scanUnsigned } from "../ucspi/getopt.ts";

export const USAGE =
  "tcpclient [ -hHrRdDqQv ] [ -i localip ] [ -p localport ] [ -T timeoutconn ] [ -l localname ] [ -t timeoutinfo ] host port program";

export interface ClientOptions {
  verbosity: 0 | 1 | 2;
  family: 4 | 6 | undefined;
  localIp: string | undefined;
  localPort: string | undefined;
  /** Per-address connect timeouts: the first pass, then a second pass over those that timed out. */
  connectTimeoutsMs: [number, number];
  localName: string | undefined;
  identTimeoutMs: number;
  remoteHostLookup: boolean;
  ident: boolean;
  noDelay: boolean;
  host: string;
  port: string;
  program: string[];
}

export function parseClientArgs(args: readonly string[]): ClientOptions {
  const { options, rest } = getopt(args, { flags: "46hHrRdDqQv", values: "ipTlt" });
  const o: ClientOptions = {
    verbosity: 1,
    family: undefined,
    localIp: undefined,
    localPort: undefined,
    connectTimeoutsMs: [2000, 58_000],
    localName: undefined,
    identTimeoutMs: 26_000,
    remoteHostLookup: true,
    ident: true,
    noDelay: false,
    host: "",
    port: "",
    program: [],
  };
  for (const { name, value } of options) {
    switch (name) {
      case "q":
        o.verbosity = 0;
        break;
      case "Q":
        o.verbosity = 1;
        break;
      case "v":
        o.verbosity = 2;
        break;
      case "4":
        o.family = 4;
        break;
      case "6":
        o.family = 6;
        break;
      case "i":
        o.localIp = value;
        break;
      case "p":
        o.localPort = value;
        break;
      case "T":
        o.connectTimeoutsMs = parseTimeouts(value);
        break;
      case "l":
        o.localName = value;
        break;
      case "t":
        o.identTimeoutMs = scanUnsigned(value) * 1000;
        break;
      case "h":
        o.remoteHostLookup = true;
        break;
      case "H":
        o.remoteHostLookup = false;
        break;
      case "r":
        o.ident = true;
        break;
      case "R":
        o.ident = false;
        break;
      case "d":
        o.noDelay = false;
        break;
      case "D":
        o.noDelay = true;
        break;
    }
  }
  if (rest.length < 3) throw new UsageError("");
  o.host = rest[0] ?? "";
  o.port = rest[1] ?? "";
  o.program = rest.slice(2);
  return o;
}

/** `x+y` or `x`, in seconds, as djb's tcpclient reads -T. */
function parseTimeouts(text: string): [number, number] {
  const plus = text.indexOf("+");
  const first = scanUnsigned(text);
  const second = plus >= 0 ? scanUnsigned(text.slice(plus + 1)) : 0;
  return [first * 1000, second * 1000];
}
