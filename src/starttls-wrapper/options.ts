// starttls-wrapper's argv → options.
import { DIALOGUES } from "../dialogue/index.ts";
import type { Policy } from "../dialogue/types.ts";
import { optionNumber } from "../tls/options.ts";
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../cli/getopt.ts";
import { secondsAsTimerMs } from "../ucspi/timers.ts";

export const USAGE =
  "starttls-wrapper [ -p smtp|lmtp|imap|pop3|nntp|sieve|postgres|ldap|mysql|xmpp ] [ -o | -r ] [ -k ] [ -v verbosity ] [ -t pretls ] [ -T connect ] [ -K handshake ] [ host port ] prog...";

const BINARY = ["postgres", "ldap", "mysql", "xmpp"];

/** The protocols whose server can go on behind TLS (-k): after the upgrade the client starts
 * over with the same commands (EHLO, CAPABILITY, CAPA), and the server holds nothing from
 * before that it must forget (RFC 3207 4.2, RFC 2595 3.1 and 4). ManageSieve's server must
 * send its capabilities again after TLS, which a server that never saw the upgrade does not. */
const KEEPS = ["smtp", "lmtp", "imap", "pop3"];

export interface WrapperOptions {
  protocol: string;
  policy: Policy;
  verbosity: number;
  /** How long the client has to send STARTTLS (ms); then: plaintext (-o) or the end (-r). */
  preTlsMs: number;
  /** How long connecting to the TLS service may take (ms); then the protocol's "not now". */
  connectMs: number;
  /** Local mode: the TLS handshake's time limit (ms). */
  handshakeMs: number;
  /** The most client bytes and commands followed before STARTTLS. */
  maxRecord: number;
  maxCommands: number;
  /** Local mode: the plaintext server goes on behind TLS (no fresh one), where it can. */
  keepServer: boolean;
  /** The TLS service to hand clients to; undefined: local mode (TLS in this process). */
  service: { host: string; port: number } | undefined;
  program: string[];
}

const seconds = (value: string, name: string) => secondsAsTimerMs(optionNumber(value, name));

export function parseWrapperArgs(args: readonly string[]): WrapperOptions {
  const { options, rest } = getopt(args, {
    flags: "orqk",
    values: "pvtTK",
    long: [
      "protocol=",
      "opportunistic",
      "require-tls",
      "keep-server",
      "verbosity=",
      "pre-tls-timeout=",
      "connect-timeout=",
      "handshake-timeout=",
      "max-record=",
      "max-commands=",
    ],
  });
  const o: WrapperOptions = {
    protocol: "smtp",
    policy: "opportunistic",
    verbosity: 1,
    preTlsMs: 300_000,
    connectMs: 10_000,
    handshakeMs: 30_000,
    maxRecord: 64 * 1024,
    maxCommands: 100,
    keepServer: false,
    service: undefined,
    program: [],
  };
  for (const { name, value } of options) {
    switch (name) {
      case "p":
      case "protocol":
        // Protocols with a path of their own (binary, or XMPP's XML stream).
        if (!DIALOGUES[value] && !BINARY.includes(value))
          throw new UsageError(
            `unknown protocol '${value}' (${[...Object.keys(DIALOGUES), ...BINARY].join(", ")})`,
          );
        o.protocol = value;
        break;
      case "o":
      case "opportunistic":
        o.policy = "opportunistic";
        break;
      case "r":
      case "require-tls":
        o.policy = "require";
        break;
      case "q":
        o.verbosity = 0;
        break;
      case "k":
      case "keep-server":
        o.keepServer = true;
        break;
      case "v":
      case "verbosity":
        o.verbosity = optionNumber(value, name);
        break;
      case "t":
      case "pre-tls-timeout":
        o.preTlsMs = seconds(value, name);
        break;
      case "T":
      case "connect-timeout":
        o.connectMs = seconds(value, name);
        break;
      case "K":
      case "handshake-timeout":
        o.handshakeMs = optionNumber(value, name);
        break;
      case "max-record":
        o.maxRecord = optionNumber(value, name);
        break;
      case "max-commands":
        o.maxCommands = optionNumber(value, name);
        break;
    }
  }
  // "host port prog..." when the second word is a port number; else "prog..." (local mode).
  const [first, second] = rest;
  if (first !== undefined && second !== undefined && /^[0-9]+$/.test(second)) {
    const port = Number(second);
    if (port < 1 || port > 65535) throw new UsageError(`bad port '${second}'`);
    o.service = { host: first, port };
    o.program = rest.slice(2);
  } else {
    o.program = rest;
  }
  if (o.program.length === 0) throw new UsageError("");
  if (o.keepServer && o.service) throw new UsageError("-k: local mode only (no host and port)");
  if (o.keepServer && !KEEPS.includes(o.protocol))
    throw new UsageError(`-k: not for ${o.protocol} (${KEEPS.join(", ")} only)`);
  return o;
}
