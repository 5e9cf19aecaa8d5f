// tlsd -n on the native TLS engine (delayed.ts has the protocol): once the program asks for
// TLS, the handshake on the connection in the addon, then the engine relays the session to and
// from the program's two pairs (SSLREADFD's, SSLWRITEFD's) itself.
import type { CertStore } from "../tls/cert-store.ts";
import { HandshakeError } from "../tls/handshake-result.ts";
import { native } from "../ucspi/native.ts";
import type { StageContext } from "../ucspi/stage.ts";
import { engineHandshakeDone, handshakeFailed } from "./metrics.ts";
import {
  NO_CERTIFICATE,
  engineSessionFacts,
  handshakeFailure,
  refuseBadName,
  startSession,
} from "./native-session.ts";
import type { TlsdOptions } from "./options.ts";

/** The handshake, then the session until the program has exited and the client has ended (or
 * CLOSE_GRACE_MS after): false when the handshake failed (logged as delayed.ts logs it). `tell`
 * gets the session's facts (`Y`); `taken` is told when the session takes `toProgram` and
 * `fromProgram`, which it closes at its end. */
export async function serveOnEngine(
  ctx: StageContext,
  options: TlsdOptions,
  store: CertStore,
  ends: { toProgram: number; fromProgram: number },
  tell: ((facts: [string, string | undefined][]) => void) | undefined,
  exited: Promise<void>,
  taken: () => void,
): Promise<boolean> {
  // As the node:tls path's -n: neither -s nor -J, the program's end is a close_notify.
  const sessionOptions = { ...options, closeNotify: true, enforceCloseNotify: false };
  const refused = (error: HandshakeError) => {
    handshakeFailed(error);
    if (options.verbosity >= 1) ctx.log(`tlsd: warning: ${error.message}\n`);
    return false;
  };
  const s = startSession(ctx.connection.fd as number, store, sessionOptions);
  if (!s) return refused(new HandshakeError(NO_CERTIFICATE, "other"));
  const facts = await s.handshake;
  if (!facts) return refused(s.failure ?? handshakeFailure((await s.ended) ?? "closed"));
  const badName = await refuseBadName(s, store, facts);
  if (badName) return refused(badName);
  engineHandshakeDone(facts);
  taken();
  tell?.(engineSessionFacts(s, facts, store, options));
  s.relay(ends.fromProgram, undefined, ends.toProgram);
  await exited;
  // Its output is all out once the engine has read its EOF (our close_notify then): the
  // client gets CLOSE_GRACE_MS to end its side, as in the immediate mode.
  await s.goodbye();
  s.closePlain();
  native().close(ends.toProgram);
  return true;
}
