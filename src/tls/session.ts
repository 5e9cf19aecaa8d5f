// The two ends of a TLS session that tlsd and tlsc share: waiting for the handshake (with its
// timeout), running the program over the session, and saying goodbye when it is done.
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { exitStatus } from "../ucspi/chain.ts";
import { clientPrefix } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import { causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import type { Connection, StageContext } from "../ucspi/stage.ts";
import { CLOSE_GRACE_MS, MISSING_CLOSE_NOTIFY } from "./close-policy.ts";
import { HandshakeError, failureReason } from "./handshake-result.ts";
import { closeNotifyFor } from "./options.ts";
import type { ClosePolicy } from "./close-policy.ts";

/** Why a connection was lost, in a few words: its transport error (a reset, say), if any. */
function lostCause(error: Error | undefined): string {
  return error ? causeText(error) : "the peer closed it";
}

/** s6-tlsd's and s6-tlsc's code for a TLS failure at run time (handshake, timeout, a missing
 * close_notify with -J). */
export const EXIT_TLS = 98;

export const HANDSHAKE_TIMED_OUT = "handshake timed out";

/** What is left of -K's `limitMs` (0: no limit) since `since`; at least 1 ms once it is set:
 * what came before the handshake (tlsd's look at the first bytes, tlsc's STARTTLS dialogue)
 * shares the one bound. */
export function timeLeft(limitMs: number, since: number): number {
  return limitMs > 0 ? Math.max(1, limitMs - (Date.now() - since)) : 0;
}

/** Resolves when the handshake is done (`event`: "secure" on a server, "secureConnect" on a
 * client); rejects with a one-line reason (a HandshakeError) on failure, close, or after
 * timeoutMs (0: never). */
export function handshake(
  tls: TLSSocket,
  event: "secure" | "secureConnect",
  timeoutMs: number,
  peerEnded = false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer =
      timeoutMs > 0
        ? setTimeout(() => reject(new HandshakeError(HANDSHAKE_TIMED_OUT, "timeout")), timeoutMs)
        : undefined;
    const fail = (error: Error, reason = failureReason(error)) => {
      clearTimeout(timer);
      reject(new HandshakeError(`TLS handshake failed: ${tlsErrorText(error)}`, reason));
    };
    const closed = () => fail(new Error("connection closed"), "closed");
    tls.once("error", fail);
    tls.once("close", closed);
    // A TLSSocket made on a half-open stream does not close at the peer's FIN: only "end" says
    // that the peer went away before (or without) its hello.
    tls.once("end", closed);
    tls.once(event, () => {
      clearTimeout(timer);
      tls.off("error", fail);
      tls.off("close", closed);
      tls.off("end", closed);
      resolve();
    });
    // The peer's end came before the TLS socket took its connection over: no handshake can be
    // finished by a peer that sends nothing more, and the TLS socket will not hear of that end.
    if (peerEnded) closed();
  });
}

type OpenSslError = Error & { library?: string; reason?: string };

/** Whether an error comes from the TLS layer (OpenSSL names its `library`), rather than from
 * the transport (a reset, say). */
export function isTlsError(error: Error): boolean {
  return Boolean((error as OpenSslError).library);
}

/** An error of the TLS layer in a few words: OpenSSL's short `reason` (its message is an
 * error-queue dump); a system error (a reset in the handshake) in djb's words, not Node's
 * "write ECONNRESET"; else the message without the advice Node adds for its own users. */
export function tlsErrorText(error: Error): string {
  const openssl = error as OpenSslError;
  const text = openssl.library && openssl.reason ? openssl.reason : causeText(error);
  return text
    .replace(
      /;?\s*if the root CA is installed locally, try running Node\.js with --use-system-ca\.?/,
      "",
    )
    .trim()
    .replace(/\s*\n\s*/g, " ");
}

/** The start of a session's fatal log lines: the program's name, and the client's address when
 * `env` has one (tlsd: "tlsd: fatal: 192.0.2.7: "). */
export function fatalPrefix(name: string, env?: Readonly<Env>): string {
  return `${name}: fatal: ${env ? clientPrefix(env) : ""}`;
}

/** Ends the session (close_notify, then FIN) and waits a little for the peer to close too.
 * `halfClosed`: the program's end was passed on as a bare TCP half-close already (-s), so no
 * close_notify follows; the peer's end, or the grace time, closes the session. */
export function goodbye(tls: TLSSocket, halfClosed = false): Promise<void> {
  return new Promise((resolve) => {
    if (tls.destroyed) return resolve();
    const timer = setTimeout(() => {
      tls.destroy();
      resolve();
    }, CLOSE_GRACE_MS);
    tls.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
    tls.on("error", () => tls.destroy());
    if (halfClosed) tls.once("end", () => tls.destroy());
    // Ended already when the program's output ended; a second end() would build (and drop) an
    // "already finished" error with its stack: 30 µs a connection.
    else if (!tls.writableEnded) tls.end();
    tls.resume();
  });
}

/**
 * The handshake of `tls`, then `check` (a client certificate policy, say): undefined when both
 * passed, else the session is destroyed, the reason logged after `fatal` ("tlsd: fatal:
 * 192.0.2.7: ", see fatalPrefix; verbosity 1 and up), `failed` told the error (a HandshakeError,
 * or what `check` threw) and the status to end with is returned.
 */
export async function handshakeOrStatus(
  ctx: StageContext,
  fatal: string,
  tls: TLSSocket,
  event: "secure" | "secureConnect",
  options: {
    handshakeTimeoutMs: number;
    verbosity: number;
    peerEnded?: boolean;
    /** Says a failed handshake in words closer to its cause than OpenSSL's, where it can. */
    explain?: (error: HandshakeError) => HandshakeError;
  },
  check?: () => void,
  failed?: (error: unknown) => void,
): Promise<number | undefined> {
  try {
    await handshake(tls, event, options.handshakeTimeoutMs, options.peerEnded);
    check?.();
    return undefined;
  } catch (caught) {
    const error =
      caught instanceof HandshakeError && options.explain ? options.explain(caught) : caught;
    failed?.(error);
    tls.destroy();
    if (options.verbosity >= 1) ctx.log(`${fatal}${(error as Error).message}\n`);
    return exitStatus(EXIT_TLS);
  }
}

/**
 * Runs `program` over an established session, through the close policy (and `wrap`, which may
 * put a stream of its own in front and report a failure), then says goodbye. A failure reported
 * on the way (a missing close_notify with -J, or `wrap`'s) is logged and makes the status 98.
 */
export async function runOverSession(
  ctx: StageContext,
  fatal: string,
  tls: TLSSocket,
  policy: ClosePolicy,
  closeNotify: boolean | undefined,
  program: string[],
  env: Env,
  wrap?: (stream: Duplex, fail: (why: string) => void) => Duplex,
): Promise<number> {
  let failed = false;
  const fail = (why: string) => {
    failed = true;
    ctx.log(`${fatal}${why}\n`);
  };
  // A TLS error once the session runs (a forged record, an alert from the peer such as a
  // TLS 1.3 server refusing our certificate after the handshake): OpenSSL has sent its alert,
  // and nothing after it can be trusted, so the session ends at once and the program reads EOF.
  let broken: Error | undefined;
  const ended = (error: Error) => {
    if (failed) return;
    if (!isTlsError(error)) {
      broken ??= error;
      return;
    }
    fail(`TLS session failed: ${tlsErrorText(error)}`);
    tls.destroy();
  };
  tls.on("error", ended);
  // A server-side TLSSocket made on its own (not by tls.Server) never releases control, and
  // Node reports its errors after the handshake under this name only.
  tls.on("_tlsError", ended);
  let stream = policy.attach(tls, () => fail(MISSING_CLOSE_NOTIFY));
  if (wrap) stream = wrap(stream, fail);
  // The peer went away (or reset the connection) while the program still wrote: the chain has
  // stopped the program (EPIPE), and what it still had to say is lost.
  let peerGone = false;
  let status: number;
  try {
    const next = { stream, ...resetOf(ctx.connection, tls) };
    status = await ctx.next(program, env, next, { onPeerGone: () => (peerGone = true) });
  } catch (error) {
    // The program could not be run: the session ends here, at once.
    tls.destroy();
    throw error;
  }
  // After a TLS 1.2 close_notify the program's output is cut once its grace is over: a clean
  // end all the same.
  if (peerGone && !failed && !policy.endedByPeer())
    fail(`connection lost before the program was done: ${lostCause(broken)}`);
  await goodbye(tls, !closeNotifyFor(closeNotify, tls.getProtocol()));
  return failed ? exitStatus(EXIT_TLS) : status;
}

/** The session's reset, for the stage after it: the socket under the session closes with a
 * reset (SO_LINGER 0), rather than end as if all were well; none where no socket is known. */
function resetOf(connection: Connection, tls: TLSSocket): Pick<Connection, "reset"> {
  const fd = connection.fd;
  if (fd === undefined) return {};
  return {
    reset: () => {
      native().abortOnClose(fd);
      tls.destroy();
      connection.stream?.destroy();
    },
  };
}
