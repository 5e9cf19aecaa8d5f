// tls-sniff's argv → options. Routes are blocks of words between `{` and `}` (execline's
// blocks; the shell passes `{` and `}` through as words), so each route names a whole command
// line, and the default route is the rest of argv as with every UCSPI program:
//
//   tls-sniff --plain { httpd } tlsd httpd
//   tls-sniff --sni imap.example.org { tlsd imapd } --alpn h2 { tlsd h2d } tlsd httpd
//   tls-sniff --ssh { tcpforward 127.0.0.1 22 } --http { redirector } tlsd httpd
import { optionNumber } from "../tls/options.ts";
import { isSniPattern } from "../tls/sni-pattern.ts";
import { block } from "../cli/block.ts";
import { UsageError } from "../ucspi/errors.ts";
import type { PlainMatch } from "./plaintext.ts";

export const USAGE =
  "tls-sniff [ -v verbosity ] [ -t silence ] [ -K hello ] [ --plain { prog... } ] [ --ssh { prog... } ] [ --http { prog... } ] [ --prefix text { prog... } ]... [ --sni name { prog... } ]... [ --alpn protocol { prog... } ]... [ prog... ]";

export type Match = { sni: string } | { alpn: string };

export interface Route {
  match: Match;
  program: string[];
}

/** A plaintext route: what the client's first bytes must be, and the route's name as the
 * command line gives it (`ssh`, `http`, `prefix:TEXT`). */
export interface PlainRoute {
  match: PlainMatch;
  name: string;
  program: string[];
}

export interface SniffOptions {
  verbosity: number;
  /** How long a client that has sent nothing is waited for before it counts as plaintext (ms):
   * protocols where the server speaks first (SMTP, IMAP, POP3) never send first. 2 s as sslh:
   * a TLS client whose first segment is lost sends it again only after the retransmission
   * timeout (1 s at least), and a shorter wait would hand it to the plaintext route. */
  silenceMs: number;
  /** How long a client that started a ClientHello has to finish it (ms). */
  helloMs: number;
  /** Where plaintext goes; undefined: plaintext is refused. */
  plain: string[] | undefined;
  /** Plaintext routes by the first bytes (first match wins); the rest goes to `plain`. */
  plainRoutes: PlainRoute[];
  /** TLS routes, first match wins; then `program`. */
  routes: Route[];
  /** The default TLS route; empty: filter mode (stdin to stdout, for `tls-sniff | tlsd`). */
  program: string[];
}

export function parseSniffArgs(args: readonly string[]): SniffOptions {
  const o: SniffOptions = {
    verbosity: 1,
    silenceMs: 2000,
    helloMs: 10_000,
    plain: undefined,
    plainRoutes: [],
    routes: [],
    program: [],
  };
  let i = 0;
  const value = (name: string): string => {
    const v = args[++i];
    if (v === undefined) throw new UsageError(`option requires an argument -- ${name}`);
    return v;
  };
  for (; i < args.length; i++) {
    const word = args[i] ?? "";
    if (word === "--") {
      i++;
      break;
    }
    if (!word.startsWith("-") || word === "-") break;
    const [flag, glued] = splitFlag(word);
    const arg = (name: string) => (glued !== undefined ? glued : value(name));
    switch (flag) {
      case "-q":
        o.verbosity = 0;
        break;
      case "-v":
      case "--verbosity":
        o.verbosity = optionNumber(arg("v"), "v");
        break;
      case "-t":
      case "--silence":
        o.silenceMs = optionNumber(arg("t"), "t");
        break;
      case "-K":
      case "--hello-timeout":
        o.helloMs = positive(arg("K"), "K");
        break;
      case "--plain":
        if (o.plain) throw new UsageError("--plain given twice");
        [o.plain, i] = block(args, i + 1, "--plain");
        break;
      case "--ssh":
      case "--http": {
        const kind = flag === "--ssh" ? "ssh" : "http";
        if (glued !== undefined) throw new UsageError(`${flag} takes no value`);
        if (o.plainRoutes.some((r) => r.name === kind)) throw new UsageError(`${flag} given twice`);
        let program: string[];
        [program, i] = block(args, i + 1, flag);
        o.plainRoutes.push({ match: { kind }, name: kind, program });
        break;
      }
      case "--prefix": {
        const text = arg("prefix");
        if (!/^[\x21-\x7e]{1,64}$/.test(text))
          throw new UsageError(
            `--prefix: 1 to 64 printable ASCII characters, no space, not '${text}'`,
          );
        let program: string[];
        [program, i] = block(args, i + 1, "--prefix");
        o.plainRoutes.push({
          match: { kind: "prefix", bytes: Buffer.from(text, "latin1") },
          name: `prefix:${text}`,
          program,
        });
        break;
      }
      case "--sni": {
        const name = arg("sni").toLowerCase();
        if (!isSniPattern(name))
          throw new UsageError(`--sni: not a host name or *.name: '${name}'`);
        let program: string[];
        [program, i] = block(args, i + 1, "--sni");
        o.routes.push({ match: { sni: name }, program });
        break;
      }
      case "--alpn": {
        const protocol = arg("alpn");
        if (protocol === "" || protocol.length > 255)
          throw new UsageError(`--alpn: not a protocol name: '${protocol}'`);
        let program: string[];
        [program, i] = block(args, i + 1, "--alpn");
        o.routes.push({ match: { alpn: protocol }, program });
        break;
      }
      default:
        throw new UsageError(`illegal option -- ${word.replace(/^-+/, "")}`);
    }
  }
  o.program = args.slice(i);
  if (o.program.length === 0 && (o.plain || o.routes.length > 0 || o.plainRoutes.length > 0))
    throw new UsageError("routes need a default program (the filter form has none)");
  return o;
}

/** "-t250" → ["-t", "250"]; "--sni=x" → ["--sni", "x"]; "-v" → ["-v", undefined]. */
function splitFlag(word: string): [string, string | undefined] {
  if (word.startsWith("--")) {
    const eq = word.indexOf("=");
    return eq < 0 ? [word, undefined] : [word.slice(0, eq), word.slice(eq + 1)];
  }
  return word.length > 2 ? [word.slice(0, 2), word.slice(2)] : [word, undefined];
}

function positive(text: string, name: string): number {
  const n = optionNumber(text, name);
  if (n <= 0) throw new UsageError(`-${name}: must be more than 0`);
  return n;
}
