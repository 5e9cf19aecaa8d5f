// tlsd on the native TLS engine (src/native/tls-engine.c, docs/dev/native-tls.md): the
// handshake and the relay of the bytes in C on this loop; the policy here, as the node:tls path
// has it (stage.ts, src/tls/session.ts, close-policy.ts): the certificate by the same SNI
// rules, -K, the TLS 1.2 close_notify rule and -J, the same log lines, variables and statuses.
// The program gets one end of a socketpair as its connection `{fd}`; a stage of this process
// with a socket of its own for the bytes (tcpforward's service) can have the engine relay to it
// instead (Connection.relayTo), the pair closed.
import { writeSync } from "node:fs";
import { Socket } from "node:net";
import { constants } from "node:os";
import type { ResumeRecord } from "../proxy/resume.ts";
import { exitStatus, releaseConnection } from "../ucspi/chain.ts";
import { causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import type { TlsContext, TlsFacts, TlsSession } from "../ucspi/native.ts";
import type { Connection, StageContext } from "../ucspi/stage.ts";
import type { CertStore } from "../tls/cert-store.ts";
import { CLOSE_GRACE_MS, MISSING_CLOSE_NOTIFY, socketOpen } from "../tls/close-policy.ts";
import { HandshakeError, reasonOfText } from "../tls/handshake-result.ts";
import { engineFacts, programEnv } from "../tls/peer-env.ts";
import { EXIT_TLS, HANDSHAKE_TIMED_OUT } from "../tls/session.ts";
import { BAD_SNI, NO_DEFAULT_CERTIFICATE, isSniName } from "../tls/sni-pattern.ts";
import type { NameOverride } from "./acme.ts";
import { engineHandshakeDone } from "./metrics.ts";
import { capabilityFilter } from "../dialogue/after-tls.ts";
import { readGreeting } from "./greeting-reader.ts";
import type { GreetingRead } from "./greeting-reader.ts";
import { resumedStream } from "./resume.ts";
import type { TlsdOptions } from "./options.ts";
import { shutAndDrain } from "./drain.ts";

/** Why this connection cannot (it is not a socket of tlsd's own). */
export function connectionBlocker(connection: Connection): string | undefined {
  if (connection.fd === undefined || connection.stream)
    return "the connection is a stream (not a socket of its own)";
  return undefined;
}

/** The engine's words for a system error (strerror) as node:tls's path says them. */
const SYSTEM_ERRORS: Record<string, string> = {
  "Connection reset by peer": "ECONNRESET",
  "Broken pipe": "EPIPE",
  "Connection timed out": "ETIMEDOUT",
};

const CLIENT_CLOSED = "the client closed the connection";

/** A system error in node:tls's path's words ("connection reset"); undefined for another. */
function systemText(text: string): string | undefined {
  const code = SYSTEM_ERRORS[text];
  return code && causeText({ code });
}

/** A handshake's failure, from the engine's cause: the log line of the node:tls path
 * (session.ts's handshake) and its reason for the metrics. */
export function handshakeFailure(cause: string): HandshakeError {
  if (cause === HANDSHAKE_TIMED_OUT) return new HandshakeError(cause, "timeout");
  // -y: the chain was refused in the handshake (tls-verify.c), in node:tls's path's words.
  if (cause.startsWith("client certificate refused: "))
    return new HandshakeError(cause, "client_certificate");
  const text = cause.replace(/^TLS handshake failed: /, "");
  if (text === CLIENT_CLOSED)
    return new HandshakeError("TLS handshake failed: connection closed", "closed");
  const system = systemText(text);
  if (system) return new HandshakeError(`TLS handshake failed: ${system}`, "closed");
  return new HandshakeError(`TLS handshake failed: ${text}`, reasonOfText(text) ?? "other");
}

/** What a running session's end with `cause` was (session.ts's runOverSession): a TLS error
 * (logged), the client lost (logged if the program has written, or writes, what it will never
 * get), or neither. */
function endOf(cause: string): { tls: string } | { lost: string } | undefined {
  if (cause === `TLS: ${CLIENT_CLOSED}`) return { lost: "the peer closed it" };
  if (cause.startsWith("TLS: ")) return { tls: `TLS session failed: ${cause.slice(5)}` };
  if (!cause.startsWith("client: ")) return undefined;
  const text = cause.slice(8);
  return { lost: systemText(text) ?? text };
}

/** What the policy made of a ClientHello it held (certificates on demand, acme.ts's
 * engineHold): the client refused, its name's certificate overridden, or the CA's validator
 * to answer with this context and no program. */
export interface Held {
  refusal?: HandshakeError;
  override?: NameOverride;
  /** A client with no name gets this name's certificate (an address's: RFC 8738). */
  unnamed?: string;
  validator?: { name: string; context: TlsContext | undefined };
}

/** A look at the ClientHello that takes its time. */
export interface HelloHold {
  /** Holds a ClientHello (its name and ALPN protocols) until the promise is settled. */
  hello(name: string | undefined, alpn: readonly string[]): Promise<Held>;
  /** The validator's handshake is over (`failure`: why it failed): logged; the status. */
  validatorDone(name: string, failure: string | undefined): number;
}

/** How long the CA's validator has for its handshake when -K sets no limit (acme.ts's). */
const VALIDATOR_MS = 10_000;

const LOST = "connection lost before the program was done";
const RESET_BYTE = Buffer.of(0);

/** The handshake, then the program over the session: the stage's status. `failed` is told of
 * a handshake that failed (metrics, suspects). With a resume `record`, the program's bytes
 * pass through resume.ts's stream (its greeting swallowed, the capability filter). */
export async function runNative(
  ctx: StageContext,
  options: TlsdOptions,
  store: CertStore,
  fatal: string,
  failed: (error: HandshakeError) => void,
  hold?: HelloHold,
  record?: ResumeRecord,
): Promise<number> {
  const n = native();
  const fd = ctx.connection.fd as number;
  const refuse = (error: HandshakeError) => {
    failed(error);
    if (options.verbosity >= 1) ctx.log(`${fatal}${error.message}\n`);
    return exitStatus(EXIT_TLS);
  };
  const s = startSession(fd, store, options, hold);
  if (!s) return refuse(new HandshakeError(NO_CERTIFICATE, "other"));
  const facts = await s.handshake;
  const validator = s.held?.validator;
  if (validator) {
    // The CA's validator closes at once: no program, no close_notify.
    if (facts) s.close("answered");
    const failure = facts ? undefined : handshakeFailure((await s.ended) ?? "closed").message;
    await s.ended;
    return hold?.validatorDone(validator.name, failure) ?? exitStatus(EXIT_TLS);
  }
  if (!facts) {
    const status = refuse(s.failure ?? handshakeFailure((await s.ended) ?? "closed"));
    shutAndDrain(fd);
    return status;
  }
  const badName = await refuseBadName(s, store, facts);
  if (badName) return refuse(badName);
  engineHandshakeDone(facts);
  const env = programEnv(ctx.env, options, engineSessionFacts(s, facts, store, options));
  s.onFailure = (why) => ctx.log(`${fatal}${why}\n`);
  const [ours, theirs] = n.socketPair();
  // A resumed session whose program's words need no filter has the engine relay to the
  // program directly, once its greeting is read here (greeting-reader.ts).
  const direct = record !== undefined && directResume(record, options);
  if (!direct) s.relay(ours, theirs);
  // What the stage wrote before its peer's reset still reaches the client, then the reset.
  const reset = () => {
    n.abortOnClose(fd);
    s.close("reset", true, true);
  };
  const resumed = record && !direct ? resumedPlain(theirs, record, s) : undefined;
  const next: Connection = resumed
    ? { stream: resumed.front, reset }
    : direct
      ? { fd: theirs, reset }
      : { fd: theirs, reset, relayTo: (socket) => s.adopt(socket) };
  let spawned = false;
  let status: number;
  let greeted: Promise<void> | undefined;
  try {
    const running = ctx.next(options.program, env, next, {
      // The program has its own copy; ours would hide its end from the engine.
      onSpawn: () => {
        spawned = true;
        if (resumed) return;
        s.spawned();
        n.close(theirs);
      },
      onSpawning: () => s.spawning(),
    });
    if (direct) greeted = greetThenRelay(s, ours, record, () => (spawned ? undefined : theirs));
    status = await running;
  } catch (error) {
    s.close("the program could not be run");
    throw error;
  } finally {
    if (!spawned && !s.adopted) releaseConnection(next);
    // Our end of the program's bytes ends once they are out: the engine's EOF.
    resumed?.plain.end();
    // The client gets CLOSE_GRACE_MS to end its side after ours (node:tls's goodbye); then
    // the session ends, and the fds are closed (tcpserver closes the connection's).
    await s.goodbye();
    // The relay, if the greeting let it begin, owns `ours` (closePlain); else it was closed.
    await greeted;
    resumed?.plain.destroy();
    s.closePlain();
  }
  return s.failed ? exitStatus(EXIT_TLS) : status;
}

/** A server name that is not a host name, after a handshake that had no onHello to refuse it
 * (no name to choose by): the session is ended (stage.ts's checkServerName). */
export async function refuseBadName(
  s: EngineSession,
  store: CertStore,
  facts: TlsFacts,
): Promise<HandshakeError | undefined> {
  const name = facts.servername;
  if (store.choosesByName() || !name || isSniName(name)) return undefined;
  s.close(BAD_SNI);
  await s.ended;
  return new HandshakeError(BAD_SNI, "other");
}

export const NO_CERTIFICATE = "TLS handshake failed: no certificate";

/** A session of the engine on `fd` with the store's default context, or its first where there
 * is none (the client's name picks); undefined when there is no certificate at all. */
export function startSession(
  fd: number,
  store: CertStore,
  options: TlsdOptions,
  hold?: HelloHold,
): EngineSession | undefined {
  // With certificates on demand there may be none yet: the held hello's name will choose.
  const start =
    store.engineContextFor(undefined) ??
    store.engineStart() ??
    (hold ? store.engineBare() : undefined);
  store.engineTickets();
  return start && new EngineSession(fd, start, store, options, hold);
}

/** What the program learns of a session (stage.ts's sessionFacts, on the engine). */
export function engineSessionFacts(
  s: EngineSession,
  facts: TlsFacts,
  store: CertStore,
  options: TlsdOptions,
): [string, string | undefined][] {
  const verdict = clientVerdict(facts, options);
  const own = options.modSsl ? store.engineCertificate(s.context) : undefined;
  const told = engineFacts(facts, options, verdict === "SUCCESS", own);
  if (options.modSsl) told.push(["SSL_CLIENT_VERIFY", verdict]);
  return told;
}

/** The client certificate's verdict as stage.ts's checkClientCertificate gives it (mod_ssl's
 * SSL_CLIENT_VERIFY): NONE, SUCCESS or FAILED:reason. -y's refusals ended the handshake. */
function clientVerdict(facts: TlsFacts, options: TlsdOptions): string {
  if (options.clientCert === "none" || !facts.peerCertificateDer) return "NONE";
  return facts.verifyError === undefined ? "SUCCESS" : `FAILED:${facts.verifyError}`;
}

/** Whether a resumed session can have the engine relay to its program directly: no bytes to
 * replay, and nothing to take out of what the program says (its protocol has no capability
 * filter, or the wrapper saw that the server offers no upgrade of its own and the program gets
 * no TLS configuration, -Z, that could make it offer one). */
function directResume(record: ResumeRecord, options: TlsdOptions): boolean {
  if (record.data !== undefined && record.data.length > 0) return false;
  return !capabilityFilter(record.protocol) || (record.noUpgrade === true && !options.keepEnv);
}

/** The direct path of a resumed session: the program's greeting read off `ours` (the
 * socketpair's end), then the engine's relay to it. A greeting that cannot be resumed ends the
 * session, as resume.ts's stream does; a session that ends first leaves it unread. Either way
 * `ours` is closed, so that the program reads its EOF. */
async function greetThenRelay(
  s: EngineSession,
  ours: number,
  record: ResumeRecord,
  program: () => number | undefined,
): Promise<void> {
  const read: GreetingRead =
    record.swallow === "greeting"
      ? await readGreeting(ours, record.protocol, s.ended)
      : { kind: "relay" };
  if (read.kind === "relay" && !s.over) return s.relay(ours, program(), undefined, read.first);
  const n = native();
  n.close(ours);
  if (read.kind !== "fail" || s.over) return;
  s.fail(`resumed ${record.protocol} session: ${read.reason}`);
  // As on the stream path: our close_notify, and what the client still sends goes nowhere (a
  // relay to a pair whose other end is closed).
  const [dead, gone] = n.socketPair();
  n.close(gone);
  s.relay(dead, undefined);
}

/** The program's side of a resumed session: `theirs`, the socketpair's other end, as a
 * stream of ours, with resume.ts's in front. The engine's session counts it as a program
 * spawned on the socketpair: a client lost is the program's EOF, and a failure if it writes
 * on. */
function resumedPlain(theirs: number, record: ResumeRecord, s: EngineSession) {
  s.spawned();
  const plain = new Socket({ fd: theirs, readable: true, writable: true, allowHalfOpen: true });
  // Its errors are the front's (the chain's relay hears them there).
  plain.on("error", () => {});
  const front = resumedStream(plain, record, (reason) =>
    s.fail(`resumed ${record.protocol} session: ${reason}`),
  );
  return { plain, front };
}

/** One session of the engine and what its callbacks told. */
export class EngineSession {
  readonly session: TlsSession;
  /** Its facts once the handshake is done; undefined when it failed. */
  readonly handshake: Promise<TlsFacts | undefined>;
  /** onEnd's cause. */
  readonly ended: Promise<string | undefined>;
  /** The handshake's failure as the SNI policy refused it (onHello). */
  failure: HandshakeError | undefined;
  /** What the hold of the ClientHello decided, once it has. */
  held: Held | undefined;
  /** A failure of the running session was logged: the status is 98. */
  failed = false;
  /** The next stage's socket took the socketpair's place (adopt). */
  adopted = false;
  /** The context that serves it: the one it began with, or onHello's. */
  context: TlsContext;
  /** Logs a failure of the running session (set once the handshake is done). */
  onFailure: (why: string) => void = () => {};
  private facts: TlsFacts | undefined;
  /** tlsClose was ours: its cause is no failure. */
  private closedHere = false;
  /** onEnd has come. */
  over = false;
  /** The adopted socket's failure (its errno), from onEnd. */
  private plainErrno = 0;
  private timer: NodeJS.Timeout | undefined;
  private plain: number | undefined;
  private plainWait: number | undefined;
  private program: number | undefined;
  /** `program` is (to be) a spawned program's end, not a stage's of this process. */
  private forProgram = false;
  /** How the client was lost while the program had nothing unsent (failedEnd): a failure if
   * the program writes before its end. */
  private lostWhileQuiet: string | undefined;

  private readonly fd: number;
  private readonly store: CertStore;
  private readonly options: TlsdOptions;

  constructor(
    fd: number,
    start: TlsContext,
    store: CertStore,
    options: TlsdOptions,
    hold?: HelloHold,
  ) {
    this.fd = fd;
    this.store = store;
    this.options = options;
    this.context = start;
    let shaken: (facts: TlsFacts | undefined) => void = () => {};
    let ended: (cause: string | undefined) => void = () => {};
    this.handshake = new Promise((resolve) => (shaken = resolve));
    this.ended = new Promise((resolve) => (ended = resolve));
    this.session = native().tlsServe(fd, start, {
      ...((hold || store.choosesByName()) && { onHello: (name) => this.hello(name) }),
      ...(hold && { onClientHello: (name, alpn) => this.hold(hold, name, alpn) }),
      closeNotify: options.closeNotify !== false,
      ...(options.clientCert !== "none" && { clientCert: options.clientCert }),
      onHandshake: (facts) => {
        clearTimeout(this.timer);
        this.facts = facts;
        shaken(facts);
      },
      onPeerEnd: (closeNotify) => this.peerEnd(closeNotify),
      onEnd: (cause, unsent, plainErrno) => {
        clearTimeout(this.timer);
        this.over = true;
        this.plainErrno = plainErrno;
        if (!this.facts) shaken(undefined);
        else if (cause) this.failedEnd(cause, unsent);
        ended(cause);
      },
    });
    this.arm(options.handshakeTimeoutMs);
  }

  /** -K's timer, from now (0: none). */
  private arm(limit: number): void {
    clearTimeout(this.timer);
    if (limit > 0) this.timer = setTimeout(() => this.close(HANDSHAKE_TIMED_OUT, false), limit);
  }

  /** The ClientHello is held while `hold` decides (an order of certificates on demand): -K
   * bounds the handshake again once it goes on, as node:tls's path orders before its handshake
   * begins. */
  private hold(hold: HelloHold, name: string | undefined, alpn: readonly string[]): boolean {
    clearTimeout(this.timer);
    // From an immediate: this call comes from the engine's poll, with no callback scope of
    // Node's around it to run the promise reactions of a decision made at once.
    setImmediate(() => {
      hold.hello(name, alpn).then(
        (held) => {
          this.held = held;
          if (held.refusal) {
            this.failure = held.refusal;
            return this.close(held.refusal.message, false);
          }
          const limit = this.options.handshakeTimeoutMs;
          this.arm(held.validator ? limit || VALIDATOR_MS : limit);
          native().tlsResume(this.session);
        },
        (error: unknown) => this.close(`TLS handshake failed: ${causeText(error)}`, false),
      );
    });
    return true;
  }

  /** Ends the session now (`afterPlain`: once the program's words are out, see tlsClose);
   * `clean`: its cause is not a failure of the session. */
  close(cause: string, clean = true, afterPlain = false): void {
    if (clean) this.closedHere = true;
    native().tlsClose(this.session, cause, afterPlain);
  }

  /** The relay to the engine's end of the socketpair, `plain`; `program` is the other end,
   * ours as well while a stage of this process uses it (no program spawned on it). With
   * `write` (tlsd -n's two pairs), `plain` is only read, `write` only written. `first`: what
   * was read of `plain` before, for the client first. */
  relay(plain: number, program: number | undefined, write?: number, first?: Buffer): void {
    this.plain = plain;
    this.program = program;
    native().tlsRelay(this.session, plain, write, first);
  }

  /** Connection.relayTo: `socket`, the next stage's, takes the place of the socketpair, which
   * is closed (unless the session is over: its end of the pair tells the stage, as before).
   * Resolves as relay() does: a failure of `socket`'s is its side's (1); the client lost, or
   * its TLS failed, is the client's side's, a reset, as the pair said it (resetPair). */
  async adopt(socket: number): Promise<[number, number]> {
    const plain = this.plain;
    const program = this.program;
    if (!this.over && plain !== undefined && program !== undefined) {
      // Before tlsAdopt: an end it meets at once is not the pair's.
      this.adopted = true;
      this.plain = this.program = undefined;
      native().tlsAdopt(this.session, socket, program);
      native().close(plain);
      native().close(program);
    }
    const cause = await this.ended;
    if (this.plainErrno) return [this.plainErrno, 1];
    if (cause === undefined || this.closedHere) return [0, 0];
    return [constants.errno.ECONNRESET, 0];
  }

  /** Our goodbye once the program is done (node:tls's): the client gets CLOSE_GRACE_MS to end
   * its side; while the program's last bytes are still on their way to a client that reads
   * slowly, the wait goes on (cut at the first grace, they were lost, our close_notify
   * after them saying all was well). Resolves when the session is over. */
  async goodbye(): Promise<void> {
    const check = () => {
      if (native().tlsPending(this.session)) timer = setTimeout(check, CLOSE_GRACE_MS);
      else this.close("goodbye");
    };
    let timer = setTimeout(check, CLOSE_GRACE_MS);
    await this.ended;
    clearTimeout(timer);
  }

  /** A program is being spawned on the socketpair: its end is the program's, though still
   * open here until spawned(). */
  spawning(): void {
    this.forProgram = true;
  }

  /** A program was spawned on the socketpair: its end is no longer this process's. */
  spawned(): void {
    this.forProgram = true;
    this.program = undefined;
  }

  /** Closes the engine's end of the socketpair (once): the program's next write fails. */
  closePlain(): void {
    const plain = this.plain;
    if (plain === undefined) return;
    // The client was lost while the program had nothing unsent: what it wrote since, up to
    // now (its end, if it came before the pair said it was readable), is its failure.
    const lost = this.lostWhileQuiet;
    this.lostWhileQuiet = undefined;
    if (lost !== undefined && this.unread()) this.fail(`${LOST}: ${lost}`);
    this.plain = undefined;
    if (this.plainWait !== undefined) native().cancelWait(plain, this.plainWait);
    native().close(plain);
  }

  /** A session that ended with `cause` after its handshake: the program has read its EOF. A
   * client lost while the program had nothing unsent is a failure only if it writes again
   * before its end (node:tls's path learns it so: the program's write fails); else the
   * program's end of the socketpair closes now, and its next write fails. */
  private failedEnd(cause: string, unsent: boolean): void {
    const end = this.closedHere ? undefined : endOf(cause);
    if (end && "tls" in end) this.fail(end.tls);
    // The stage that took the plaintext side (adopt) says the client's loss in its words.
    if (this.adopted) return;
    // A stage of this process (tcpforward) says the client's loss in its own words, as it
    // learns it: a reset of the socketpair.
    if (end && "lost" in end && this.program !== undefined && !this.forProgram)
      return this.resetPair();
    if (end && "lost" in end && unsent) this.fail(`${LOST}: ${end.lost}`);
    const plain = this.plain;
    if (!end || !("lost" in end) || unsent || plain === undefined) return this.closePlain();
    this.lostWhileQuiet = end.lost;
    this.plainWait = native().whenReadable(plain, () => {
      this.plainWait = undefined;
      this.closePlain();
    });
  }

  /** A socketpair has no reset of its own; one end closed with bytes unread in it is one for
   * the other end (ECONNRESET): a byte sent from the program's end where none is unread (the
   * pair empty, so the write cannot block: the end may be a blocking one), then ours closed. */
  private resetPair(): void {
    if (!this.unread()) {
      try {
        writeSync(this.program as number, RESET_BYTE);
      } catch {
        // Its end is closed: nothing to tell.
      }
    }
    this.closePlain();
  }

  /** Whether the program wrote bytes that are still in the socketpair. */
  private unread(): boolean {
    if (this.plain === undefined) return false;
    try {
      return Boolean(native().recv(this.plain, 1, false));
    } catch {
      // Gone as well.
      return false;
    }
  }

  fail(why: string): void {
    this.failed = true;
    this.onFailure(why);
  }

  /** The context for the client's name, by the store's rules (stage.ts's SNICallback). */
  private hello(name: string | undefined): TlsContext | undefined {
    const refuse = (text: string, reason: "no_certificate" | "other") => {
      this.failure = new HandshakeError(`TLS handshake failed: ${text}`, reason);
      return new Error(text);
    };
    const held = this.held;
    if (held?.validator) {
      if (held.validator.context) return held.validator.context;
      throw refuse(`no challenge for ${held.validator.name}`, "other");
    }
    if (name === undefined) {
      const own = held?.unnamed && this.store.engineContextFor(held.unnamed);
      if (own) return (this.context = own);
      if (this.store.config.fallback) return undefined;
      throw refuse(NO_DEFAULT_CERTIFICATE, "no_certificate");
    }
    if (!isSniName(name)) throw refuse(BAD_SNI, "other");
    const overridden = name.toLowerCase() === held?.override?.name;
    if (overridden && held?.override?.certificate === "none")
      throw refuse(`no certificate for ${name} yet`, "no_certificate");
    const context = this.store.engineContextFor(overridden ? undefined : name);
    if (!context) throw refuse(`no certificate for ${name}`, "no_certificate");
    this.context = context;
    return context;
  }

  /** The client's end (close-policy.ts): -J makes one without close_notify fatal; in TLS 1.2 a
   * close_notify ends the whole session, the program's writes dropped for CLOSE_GRACE_MS. */
  private peerEnd(closeNotify: boolean): boolean {
    if (!closeNotify && this.options.enforceCloseNotify) {
      this.fail(MISSING_CLOSE_NOTIFY);
      this.close(MISSING_CLOSE_NOTIFY);
      return false;
    }
    // As close-policy.ts: without -J, a close_notify with the FIN right behind it is taken for
    // a bare FIN (the safe side: a reply a half-closing client waits for is never lost).
    const endsSession =
      closeNotify &&
      this.facts?.version !== "TLSv1.3" &&
      (this.options.enforceCloseNotify || socketOpen(this.fd));
    if (!endsSession) return false;
    const cut = setTimeout(() => this.close("the program's grace is over"), CLOSE_GRACE_MS);
    void this.ended.then(() => clearTimeout(cut));
    return true;
  }
}
