// What the wrapper's paths for protocols the line snooper does not fit share (PostgreSQL,
// LDAP, MySQL, XMPP): log lines, the plaintext server on a socket pair, the first packet
// answered here or passed on untouched, and tlsd in this process with prog behind TLS.
import { writeSync } from "node:fs";
import { Socket } from "node:net";
import type { Duplex, Readable } from "node:stream";
import { declines, refusals, upgrades } from "../metrics/catalog.ts";
import { stripTlsConfig } from "../tls/peer-env.ts";
import { connectionStream, exitStatus, releaseConnection } from "../ucspi/chain.ts";
import { clientPrefix, copyEnv } from "../ucspi/env.ts";
import { causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import { fdOfStream } from "../stream/fd-of-stream.ts";
import { drain, peekBytes } from "../stream/peek.ts";
import { resetConnection } from "../stream/reset.ts";
import type { Connection, StageContext } from "../ucspi/stage.ts";
import type { WrapperOptions } from "./options.ts";
import { Stopper } from "../ucspi/stop-signal.ts";

/** The status of a connection refused here (bad input, as tls-sniff's). */
export const REFUSED = exitStatus(100);
/** The most bytes any first packet looked at here may have. */
const MAX_LOOKED_AT = 64 * 1024;

/** A peer's words (an element's name) in a log line: printable ASCII, "?" for any other
 * byte, at most `max` characters ("..." after a cut). */
export function shown(text: string, max = 64): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}

/** The wrapper's warning and info lines for this client: one line each, whatever they quote
 * (a control character or a line end from a peer becomes "?"). */
export function logger(ctx: StageContext, options: WrapperOptions) {
  const who = clientPrefix(ctx.env);
  const line = (what: string) => what.replace(/[^\x20-\x7e]/g, "?");
  return {
    warn: (what: string) => {
      if (options.verbosity >= 1) ctx.log(`starttls-wrapper: warning: ${who}${line(what)}\n`);
    },
    info: (what: string) => {
      if (options.verbosity >= 2) ctx.log(`starttls-wrapper: info: ${who}${line(what)}\n`);
    },
  };
}

const FAMILIES = { upgrade: upgrades, decline: declines, refusal: refusals };

/** tcpserver --metrics: the client was handed to TLS, went on in plaintext, or was refused
 * because TLS is required (-r). */
export function count(what: keyof typeof FAMILIES, options: WrapperOptions): void {
  FAMILIES[what].inc({ protocol: options.protocol });
}

/** Why a session's server could not be run, by session: the paths that start it at once
 * (MySQL, XMPP) see only its end, and would end as a session of ours, status 100, without a
 * word; serverRan() makes that failure the session's, one line and 111, as on the line paths. */
const notRun = new WeakMap<StageContext, unknown>();

/** Throws what kept the session's server from running, if anything did. */
export function serverRan(ctx: StageContext): void {
  if (notRun.has(ctx)) throw notRun.get(ctx);
}

/** The plaintext server (prog) on a socket pair: our end, its status, and the signal that
 * lets it go (SIGTERM for a spawned one; an in-process stage sees our end close). */
export function startServer(ctx: StageContext, options: WrapperOptions) {
  const [ours, theirs] = native().socketPair();
  const server = new Socket({ fd: ours, readable: true, writable: true, allowHalfOpen: true });
  server.on("error", () => {});
  const env = copyEnv(ctx.env);
  // The plaintext server never needs a key, nor to know where one is.
  stripTlsConfig(env);
  const letGo = new Stopper();
  let spawned = false;
  // The stage behind (tcpforward) says through it that its service reset the connection: the
  // socket pair has no reset of its own to carry that to us.
  let reset = false;
  const serverSide: Connection = { fd: theirs, reset: () => (reset = true) };
  const done = ctx
    .next(options.program, env, serverSide, {
      stop: letGo,
      onSpawn: () => {
        // It has its own copy; ours would hide its end from us.
        spawned = true;
        native().close(theirs);
      },
    })
    .finally(() => {
      if (!spawned) releaseConnection(serverSide);
    });
  done.catch((error: unknown) => notRun.set(ctx, error));
  // Its status as soon as it is out. An in-process server that failed (tcpforward, whose
  // service reset its connection) has it out, and has said why, before its end reaches us:
  // that end is its failure, not a clean end.
  let status: number | undefined;
  done.then(
    (s) => (status = s),
    () => undefined,
  );
  return {
    server,
    done,
    letGo,
    wasReset: () => reset,
    /** The server's failed status, once it is out; undefined before, or when it ended well. */
    failedStatus: () => (status === 0 ? undefined : status),
  };
}

/** The client's connection is cut with a reset: the server's side was reset, and a relay
 * passes that on as a reset, so that the client never takes a cut reply for a whole one. */
export function resetClient(connection: Connection): void {
  resetConnection(connection);
  connection.stream?.destroy();
}

/** Once the server's output has ended, a reset of the server's side (`wasReset`) is passed on
 * to the client as a reset. Set before a relay's own listeners, which would end the client's
 * side as if all were well. */
export function passReset(server: Readable, wasReset: () => boolean, client: Connection): void {
  const ended = () => {
    if (wasReset()) resetClient(client);
  };
  if (server.readableEnded) ended();
  else server.once("end", ended);
}

/** The command line of the wrapper's own tlsd: -K the wrapper's, and at -v 2 its -v 2 (which
 * says whether the native engine or node:tls served the session). */
export function tlsdArgv(options: WrapperOptions, program: readonly string[]): string[] {
  const verbose = options.verbosity >= 2 ? ["-v", "2"] : [];
  return ["tlsd", "-K", String(options.handshakeMs), ...verbose, "--", ...program];
}

/** The fd of the client's socket for the wrapper's own tlsd (`argv`), when tlsd takes that to
 * the native engine and nothing the client sent waits in `client`: its reading stops here
 * (fd-of-stream.ts). Else undefined, and tlsd gets the stream (node:tls). */
export async function engineFd(
  ctx: StageContext,
  argv: readonly string[],
  client: Duplex,
): Promise<number | undefined> {
  const { engineWanted } = await import("../tlsd/stage.ts");
  return engineWanted(argv.slice(1), ctx.env) ? fdOfStream(client, ctx.connection.fd) : undefined;
}

/** tlsd takes the connection here, and runs prog behind TLS. */
export async function tlsBehind(
  ctx: StageContext,
  options: WrapperOptions,
  connection: Connection,
): Promise<number> {
  const { tlsdStage } = await import("../tlsd/stage.ts");
  return tlsdStage.run({ ...ctx, argv: tlsdArgv(options, options.program), connection });
}

/** The server gets the connection as it is: every byte still in it. */
export function plaintext(ctx: StageContext, options: WrapperOptions, connection: Connection) {
  const env = copyEnv(ctx.env);
  stripTlsConfig(env);
  return ctx.next(options.program, env, connection);
}

/** Takes n bytes off the connection (they were peeked). */
export function take(connection: Connection, n: number): void {
  if (connection.fd !== undefined && !connection.stream) native().recv(connection.fd, n, true);
  else connectionStream(connection).read(n);
}

/** Sends `bytes` to the client: undefined once sent, or why it could not be (it reset the
 * connection meanwhile, say). */
export function send(connection: Connection, bytes: Buffer): unknown {
  if (connection.fd === undefined || connection.stream) {
    connectionStream(connection).write(bytes);
    return undefined;
  }
  try {
    writeSync(connection.fd, bytes);
    return undefined;
  } catch (error) {
    return error ?? "failed";
  }
}

/** A connection (the client's, or `who`'s) failed under a session, in its warning line: a
 * reset (ECONNRESET, or EPIPE on a write after one) said as such; anything else, by its cause. */
export function failed(error: unknown, who = "client"): string {
  const cause = causeText(error);
  if (cause === "connection reset" || cause === "broken pipe") return `${who} reset the connection`;
  return `${who} connection failed: ${cause}`;
}

/** Watches for the client's connection failing (a reset) while the server is still on: what
 * ended the session then. A failure after the server's end (a client that resets once it has
 * its last reply) ended nothing. */
export function failures(client: Duplex, server: Duplex, warn: (what: string) => void) {
  let serverOn = !server.readableEnded;
  let failure: unknown;
  server.once("end", () => (serverOn = false));
  client.on("error", (error) => {
    if (serverOn) failure ??= error;
  });
  const warned = (when?: string): boolean => {
    if (failure === undefined) return false;
    warn(when ? `${failed(failure)} ${when}` : failed(failure));
    return true;
  };
  return {
    /** Says the failure, if there was one (`when` after it): true when it did. */
    warned,
    /** A relayed session's status: the server's, or ours when a failure ended it (said). */
    status: (serverStatus: number): number => (warned() ? REFUSED : serverStatus),
  };
}

/** The session's end when the client's connection failed before its go-ahead (a reset while
 * it was sent): one warning line, refused, as every path ends a session with no TLS after the
 * client asked for it. */
export function clientGone(warn: (what: string) => void, error: unknown, when: string): number {
  warn(`${failed(error)} ${when}`);
  return REFUSED;
}

/** The client's bytes are taken off (so that it gets a FIN, not a reset, and reads the
 * answer), the answer goes out, and the connection ends. */
export async function refuse(connection: Connection, answer?: Buffer): Promise<number> {
  drain(connection, MAX_LOOKED_AT);
  if (connection.fd !== undefined && !connection.stream) {
    if (answer) {
      try {
        writeSync(connection.fd, answer);
      } catch {
        // gone already
      }
    }
    return REFUSED;
  }
  const stream = connectionStream(connection);
  stream.on("error", () => {});
  stream.resume();
  await endWith(stream, answer);
  stream.destroy();
  return REFUSED;
}

/** Ends the stream after `last` (if any); resolves once that is written out. */
export function endWith(stream: Duplex, last?: Buffer): Promise<void> {
  return new Promise((resolve) => stream.end(last ?? Buffer.alloc(0), () => resolve()));
}

/** The client's first packet, peeked whole (`need`: enough, or how many bytes in all), or the
 * status the session ended with: 0 when the client left at once; refused with a line naming
 * what did not come (`what`: the packet; `started`: the same once it had begun) when the
 * client broke off; and when the pre-TLS limit (-t) ran out first, as past the line
 * protocols' limits: with -r refused, opportunistic the connection goes to prog as it is (a
 * client slow to start is served in plaintext, its bytes still to come read by the server). */
export async function peekFirst(
  ctx: StageContext,
  options: WrapperOptions,
  connection: Connection,
  maxBytes: number,
  need: (bytes: Buffer) => true | number,
  names: { what: string; started: string },
): Promise<{ bytes: Buffer; connection: Connection } | { status: number }> {
  const { warn, info } = logger(ctx, options);
  const limitMs = options.preTlsMs;
  const peeked = await peekBytes(
    connection,
    { silenceMs: limitMs, helloMs: limitMs, maxBytes },
    need,
  );
  const { look } = peeked;
  if (look.kind === "done") return { bytes: look.bytes, connection: peeked.connection };
  if (look.kind === "closed") {
    // Gone before its first byte: an end is no error, a reset is.
    if (look.reason === "closed") return { status: exitStatus(0) };
    warn(failed(look.reason));
    return { status: REFUSED };
  }
  const why =
    look.kind === "silent"
      ? `no ${names.what} within ${limitMs / 1000} s`
      : `an unfinished ${names.started}: ${look.reason}`;
  const late = look.kind === "silent" || look.reason === "timed out";
  if (late && options.policy === "opportunistic") {
    info(`${why}: plaintext`);
    count("decline", options);
    return { status: await plaintext(ctx, options, peeked.connection) };
  }
  warn(why);
  // -r ends it at a pre-TLS limit: a refusal, as the line protocols count theirs.
  if (late) count("refusal", options);
  return { status: await refuse(peeked.connection) };
}
