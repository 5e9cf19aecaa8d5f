// tls-sniff: TLS or plaintext? Looks at the connection's first bytes (none taken) and runs the
// program of the matching route on the very same connection, with what it learned in its env.
import { sniffed } from "../metrics/catalog.ts";
import { exitStatus } from "../ucspi/chain.ts";
import { clientPrefix } from "../ucspi/env.ts";
import { UsageError, parseOrUsage } from "../ucspi/errors.ts";
import { oneWay } from "../stream/relay.ts";
import type { Connection, Stage, StageContext } from "../ucspi/stage.ts";
import { USAGE, parseSniffArgs } from "./options.ts";
import type { SniffOptions } from "./options.ts";
import { drain, peek } from "./peek.ts";
import type { Verdict } from "./peek.ts";
import { chooseRoute, shownAlpn, sniffEnv } from "./route.ts";
import { stageOptions } from "../ucspi/stage-options.ts";

/** Refused: a malformed or unfinished hello, plaintext with no route, a PROXY header (s6's "bad
 * input"). */
const REFUSED = 100;

export const sniffStage: Stage = {
  prepare(argv) {
    parseOrUsage(USAGE, () => parseSniffArgs([...argv]));
  },

  chainsAfter(argv) {
    const o = parseSniffArgs([...argv]);
    return [
      o.plain ?? [],
      ...o.plainRoutes.map((route) => route.program),
      ...o.routes.map((route) => route.program),
      o.program,
    ];
  },

  async run(ctx) {
    const o = stageOptions(ctx.argv, USAGE, parseSniffArgs);
    if (o.program.length === 0) return filter(ctx, o);
    const { verdict, connection } = await peek(ctx.connection, o);
    if (verdict.kind === "closed") {
      counted(verdict, "none");
      return 0;
    }
    if (verdict.kind !== "tls" && verdict.kind !== "plain")
      return refuse(ctx, o, verdict, connection);
    const route = chooseRoute(o, verdict);
    if (route === undefined) return refuse(ctx, o, verdict, connection);
    counted(verdict, route.name);
    if (o.verbosity >= 2)
      ctx.log(`tls-sniff: info: ${clientPrefix(ctx.env)}${describe(verdict)}\n`);
    return ctx.next(route.program, sniffEnv(ctx.env, verdict), connection);
  },
};

/** The pipeline form, `tls-sniff | tlsd prog`: stdin to stdout, TLS only, nothing else to pass
 * on (an environment cannot cross a pipe). */
async function filter(ctx: StageContext, o: SniffOptions): Promise<number> {
  if (ctx.connection.fd !== undefined)
    throw new UsageError(
      "no program: as a filter, stdout must be a pipe to the next program, not the connection",
      USAGE,
    );
  const { verdict, connection } = await peek(ctx.connection, o);
  const stream = connection.stream;
  if (verdict.kind === "closed" || !stream) {
    stream?.end();
    return 0;
  }
  if (verdict.kind !== "tls") return refuse(ctx, o, verdict, connection);
  if (o.verbosity >= 2) ctx.log(`tls-sniff: info: ${clientPrefix(ctx.env)}${describe(verdict)}\n`);
  await oneWay(stream, stream);
  return 0;
}

/** Closes the connection (the bytes looked at taken off first, so the client sees a FIN, not
 * a reset) with a line saying why; the status to end with. */
function refuse(
  ctx: StageContext,
  o: SniffOptions,
  verdict: Verdict,
  connection: Connection,
): number {
  if (o.verbosity >= 1)
    ctx.log(`tls-sniff: warning: ${clientPrefix(ctx.env)}refused: ${refusal(verdict, o)}\n`);
  counted(verdict, "none");
  drain(connection);
  connection.stream?.destroy();
  return exitStatus(REFUSED);
}

/** Why a connection with `verdict` is refused, in the log's words. */
function refusal(verdict: Verdict, o: SniffOptions): string {
  switch (verdict.kind) {
    case "malformed":
      return `malformed ClientHello: ${verdict.reason}`;
    case "unfinished":
      return `unfinished ClientHello: ${verdict.reason}`;
    case "plain": {
      const what = verdict.silent ? "plaintext (a silent client)" : "plaintext";
      const untaken =
        o.plainRoutes.length > 0 ? " that no --ssh, --http or --prefix route takes," : "";
      return `${what}${untaken} and no --plain route`;
    }
    case "proxy":
      return "got a PROXY protocol header: run tcpserver with --proxy";
    default:
      return "no route";
  }
}

/** tcpserver --metrics: the verdict (a silent client's plaintext apart) and the route taken
 * (`none`: refused, or the client left). */
function counted(verdict: Verdict, route: string): void {
  if (!sniffed.enabled) return;
  const kind = verdict.kind === "plain" && verdict.silent ? "silent" : verdict.kind;
  sniffed.inc({ verdict: kind, route });
}

function describe(verdict: Extract<Verdict, { kind: "tls" | "plain" }>): string {
  if (verdict.kind === "plain")
    return verdict.silent
      ? "plain (silent)"
      : verdict.route
        ? `plain ${verdict.route.name}`
        : "plain";
  const { serverName, alpn } = verdict.hello;
  const shown = shownAlpn(alpn);
  return `tls sni=${serverName ?? "-"} alpn=${shown.length > 0 ? shown.join(",") : "-"}`;
}
