// tlsd: TLS on the connection, plaintext to the program it runs, the session in its env.
import type { Server, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import type { SecureContext } from "node:tls";
import { CertStore, storeConfig, storeConfigInput } from "../tls/cert-store.ts";
import { configWarnings } from "../tls/config-warnings.ts";
import { staplerOf } from "../tls/node-stapling.ts";
import { closePolicy, endWasRead } from "../tls/close-policy.ts";
import { peerCertificate, programEnv, tlsFacts } from "../tls/peer-env.ts";
import { HandshakeError } from "../tls/handshake-result.ts";
import { BAD_SNI, NO_DEFAULT_CERTIFICATE, isSniName } from "../tls/sni-pattern.ts";
import {
  EXIT_TLS,
  HANDSHAKE_TIMED_OUT,
  fatalPrefix,
  handshakeOrStatus,
  runOverSession,
  timeLeft,
  tlsErrorText,
} from "../tls/session.ts";
import { exitStatus } from "../ucspi/chain.ts";
import { tcpVar } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError, parseOrUsage } from "../ucspi/errors.ts";
import { tlsIds } from "../ucspi/privileges.ts";
import { onReload } from "../ucspi/reload.ts";
import type { Connection, Stage, StageContext } from "../ucspi/stage.ts";
import { findResumeRecord } from "../proxy/resume.ts";
import type { ResumeRecord } from "../proxy/resume.ts";
import type { NameOverride } from "./acme.ts";
import { runDelayed } from "./delayed.ts";
import { lookAtFirstBytes, peekFirstBytes } from "./first-bytes.ts";
import { connectionBlocker, runNative } from "./native-session.ts";
import type { FirstBytes } from "./first-bytes.ts";
import { Suspects } from "./suspects.ts";
import {
  handshakeDone,
  handshakeFailed,
  observeCertificates,
  observeHandshakeSteps,
} from "./metrics.ts";
import { checkResumeRecord, resumedStream } from "./resume.ts";
import { USAGE, engineNamed, engineOf, engineVariableWarning, parseTlsdArgs } from "./options.ts";
import type { TlsdOptions } from "./options.ts";
import { stageOptions } from "../ucspi/stage-options.ts";

// One store per configuration, shared by every connection of this process: contexts (and
// their session ticket keys) are made once and reloaded when their files change.
const stores = new Map<string, CertStore>();

// The clients whose first bytes tlsd looks at before the handshake (a PROXY header in place of
// a ClientHello), in this process.
const suspects = new Suspects();

// tcpserver --metrics: when each certificate of every store expires, and where the native
// engine took its handshake steps, read at each scrape.
observeCertificates(() => stores.values());
observeHandshakeSteps();

// tcpserver's SIGHUP: every store reads its files again now (running sessions keep the
// context they were made with), and says again what start-up said about them.
onReload((log) => {
  for (const store of stores.values()) {
    for (const problem of store.reload())
      log(`tlsd: warning: ${problem}; the certificate and key loaded before still serve\n`);
    for (const line of configWarnings(store.config, new Date())) log(`tlsd: warning: ${line}\n`);
    for (const line of store.takeNotices()) log(`tlsd: warning: ${line}\n`);
  }
});

// Each tlsd argv's stores by what their configuration is made of (storeConfigInput): the look-up
// a connection makes.
const storesByInput = new WeakMap<TlsdOptions, Map<string, CertStore>>();

function storeFor(env: Readonly<Env>, options: TlsdOptions): CertStore {
  let known = storesByInput.get(options);
  if (!known) storesByInput.set(options, (known = new Map()));
  const input = `${env["UCSPI_TLS_ENGINE"]}\0${storeConfigInput(env, options.sniLevel)}`;
  let store = known.get(input);
  if (!store) {
    store = storeByConfig(env, options);
    // Bounded: rules could give every client other values (the stores stay in `stores`).
    if (known.size < 1000) known.set(input, store);
  }
  return store;
}

function storeByConfig(env: Readonly<Env>, options: TlsdOptions): CertStore {
  const config = storeConfig(env, options.sniLevel, options.clientCert !== "none");
  // The native engine's contexts are made with the others, at start (keys may need root).
  const engine = nativeWanted(options, env) ? { alpn: options.alpn } : undefined;
  const key = JSON.stringify([
    engine,
    config.fallback,
    [...config.named],
    config.ca,
    config.ciphers,
    config.ticketFile,
    config.crlFile,
  ]);
  let store = stores.get(key);
  if (!store) {
    store = new CertStore(config, undefined, engine);
    store.check();
    stores.set(key, store);
  }
  return store;
}

/** Whether tlsd run with `argv` in `env` takes a connection that is a socket of its own to
 * the native engine (starttls-wrapper's local mode then gives it the socket, not a stream). */
export function engineWanted(argv: readonly string[], env: Readonly<Env>): boolean {
  return nativeWanted(parseTlsdArgs([...argv]), env);
}

/** Whether the configuration asks for the native engine (a connection that is a stream still
 * gets node:tls: connectionBlocker). */
function nativeWanted(options: TlsdOptions, env: Readonly<Env>): boolean {
  return engineOf(options, env) === "native";
}

export const tlsdStage: Stage = {
  // At tcpserver's start: the certificates and keys are loaded now, as root if it is, and kept
  // for every connection (storeFor); a bad configuration stops tcpserver here.
  prepare(argv, env, warn) {
    const options = parseOrUsage(USAGE, () => parseTlsdArgs([...argv]));
    const store = storeFor(env, options);
    for (const line of configWarnings(store.config, new Date())) warn(line);
    for (const line of store.takeNotices()) warn(line);
    const engineWarning = engineVariableWarning(env);
    if (engineWarning) warn(engineWarning);
    if (env["CRLFILE"] !== undefined && options.clientCert === "none")
      warn("CRLFILE is set, but no client certificate is asked for (-Y or -y): it is not used");
    // A CERTFILE:name variable does not survive sh (a run script, a systemd ExecStart= with a
    // shell): without this line, -k 1 would just serve the default pair to every name.
    if (options.sniLevel === 1 && store.config.named.size === 0 && !store.config.liveDir)
      warn(
        "-k 1 finds no named pair (no CERTFILE:name variable, no CERTDIR): every client gets CERTFILE. A shell drops CERTFILE:name: set it with env, or use CERTDIR",
      );
  },

  chainsAfter(argv) {
    return [parseTlsdArgs([...argv]).program];
  },

  async run(ctx) {
    const options = stageOptions(ctx.argv, USAGE, parseTlsdArgs);
    const store = storeFor(ctx.env, options);
    // What changed on disk since (an OCSP response that may not be stapled), said once.
    for (const line of store.takeNotices()) ctx.log(`tlsd: warning: ${line}\n`);
    // As s6-tlsd: the keys are loaded, nothing more needs root.
    ctx.dropPrivileges(tlsIds(ctx.env));
    const record = resumeRecordOf(ctx.connection);
    // The native engine where it can (native-session.ts), else node:tls; when the engine was
    // named, -v 2 says which served and why.
    const whyNot = nativeWanted(options, ctx.env) ? connectionBlocker(ctx.connection) : "";
    const useEngine = whyNot === undefined;
    if (whyNot !== "" && options.verbosity >= 2 && engineNamed(options, ctx.env))
      ctx.log(
        `tlsd: info: ${whyNot ? `node:tls, not the native engine: ${whyNot}` : "native TLS engine"}\n`,
      );
    if (options.delayed) {
      if (record) throw new FatalError("a resume record needs tlsd without -n", 100);
      if (ctx.env["ACME_DIRECTORY"] !== undefined)
        throw new FatalError("ACME_DIRECTORY needs tlsd without -n", 100);
      return runDelayed(ctx, options, store, useEngine);
    }
    const fatal = fatalPrefix("tlsd", ctx.env);
    const client = tcpVar(ctx.env, "REMOTEIP");
    // Loaded only when asked for: a tlsd per connection (djb's tcpserver) starts faster.
    const onDemand =
      ctx.env["ACME_DIRECTORY"] === undefined ? undefined : await import("./acme.ts");
    const acme = onDemand?.onDemandFor(ctx);
    // With certificates on demand, their peek at every ClientHello finds a PROXY header too,
    // and leaves the socket as it was: no look of ours, whose stream would take the client's
    // end while an order runs, out of the TLS socket's sight. The engine's look is a peek
    // that leaves it as it was: it looks at every one then, as their peek does.
    let handshakeOptions = options;
    const started = Date.now();
    if (acme ? useEngine : suspects.shouldLook(client, started)) {
      const first = useEngine
        ? await peekFirstBytes(ctx.connection.fd as number, options.handshakeTimeoutMs)
        : await lookAtFirstBytes(ctx.connection, options.handshakeTimeoutMs);
      if (first.kind === "proxy") suspects.notTls(client, Date.now());
      else suspects.cleared(client);
      if (first.kind !== "other") return refuseBeforeHandshake(ctx, fatal, options, first);
      // -K bounds the look and the handshake together.
      handshakeOptions = {
        ...options,
        handshakeTimeoutMs: timeLeft(options.handshakeTimeoutMs, started),
      };
    }
    const failed = (error: unknown) => {
      handshakeFailed(error);
      if (error instanceof HandshakeError && error.reason === "not_tls")
        suspects.notTls(client, Date.now());
    };
    if (useEngine)
      return runNative(
        ctx,
        handshakeOptions,
        store,
        fatal,
        failed,
        acme && onDemand?.engineHold(ctx, acme, store, options),
        record,
      );
    let connection = ctx.connection;
    let override: NameOverride | undefined;
    let unnamed: string | undefined;
    if (onDemand && acme) {
      const prepared = await onDemand.beforeHandshake(ctx, acme, store, options);
      if (prepared.status !== undefined) return prepared.status;
      if (prepared.proxyHeader)
        return refuseBeforeHandshake(ctx, fatal, options, { kind: "proxy" });
      if (prepared.refusal) return refuseWith(ctx, fatal, options, prepared.refusal);
      ({ connection, override, unnamed } = prepared);
    }
    const policy = closePolicy(connection, options);
    // A client whose end was read before us (a wrapper waited for its server after STARTTLS):
    // its handshake fails now, not at -K.
    const peerEnded = connection.stream !== undefined && endWasRead(connection.stream);
    const tls = serverTls(policy.transport, store, options, override, unnamed);
    let verdict = "NONE";
    const refused = await handshakeOrStatus(
      ctx,
      fatal,
      tls,
      "secure",
      { ...handshakeOptions, peerEnded, explain: (error) => explainFailure(tls, store, error) },
      () => {
        checkServerName(tls);
        verdict = checkClientCertificate(tls, options);
      },
      failed,
    );
    if (refused !== undefined) return refused;
    handshakeDone(tls);
    const env = programEnv(ctx.env, options, sessionFacts(tls, options, verdict));
    return runOverSession(
      ctx,
      fatal,
      tls,
      policy,
      options.closeNotify,
      options.program,
      env,
      record &&
        ((stream, fail) =>
          resumedStream(stream, record, (reason) =>
            fail(`resumed ${record.protocol} session: ${reason}`),
          )),
    );
  },
};

/** The end of a connection whose first bytes are a PROXY header, that sent nothing in -K's
 * time, or that left first: logged and counted as a handshake that failed. */
function refuseBeforeHandshake(
  ctx: StageContext,
  fatal: string,
  options: TlsdOptions,
  first: Exclude<FirstBytes, { kind: "other" }>,
): number {
  const error =
    first.kind === "proxy"
      ? new HandshakeError("got a PROXY protocol header: run tcpserver with --proxy", "not_tls")
      : first.kind === "silent"
        ? new HandshakeError(HANDSHAKE_TIMED_OUT, "timeout")
        : new HandshakeError(`TLS handshake failed: ${first.reason}`, "closed");
  return refuseWith(ctx, fatal, options, error);
}

/** A connection refused before its handshake: counted, closed at once, one line. */
function refuseWith(
  ctx: StageContext,
  fatal: string,
  options: TlsdOptions,
  error: HandshakeError,
): number {
  handshakeFailed(error);
  // At once, as a failed handshake ends it (a stream left open would hold a tlsd of its own).
  ctx.connection.stream?.destroy();
  if (options.verbosity >= 1) ctx.log(`${fatal}${error.message}\n`);
  return exitStatus(EXIT_TLS);
}

/** A client that sent no name, where there is no default pair (-k 2, CERTDIR alone): OpenSSL,
 * with no certificate to offer, says "no suitable signature algorithm"; this says why. */
export function explainFailure(
  tls: TLSSocket,
  store: CertStore,
  error: HandshakeError,
): HandshakeError {
  if (store.config.fallback || tls.servername || error.reason !== "no_shared_algorithms")
    return error;
  return new HandshakeError(`TLS handshake failed: ${NO_DEFAULT_CERTIFICATE}`, "no_certificate");
}

/** A server name that is not a host name (a control character, a space) never reaches the log
 * or SSL_TLS_SNI_SERVERNAME: the session ends, as in tls-sniff. Without an SNI callback, after
 * the handshake; with one, the callback refuses it first. */
export function checkServerName(tls: TLSSocket): void {
  const name = tls.servername;
  if (name && !isSniName(name)) throw new HandshakeError(BAD_SNI, "other");
}

/** The resume record of the connection's PROXY header (tcpserver --proxy), if it has one. */
function resumeRecordOf(connection: Connection): ResumeRecord | undefined {
  if (!connection.proxy) return undefined;
  let record: ResumeRecord | undefined;
  try {
    record = findResumeRecord(connection.proxy);
  } catch (error) {
    throw new FatalError((error as Error).message, 100);
  }
  if (record) checkResumeRecord(record);
  return record;
}

/** The server side of a TLS session on `transport`, with the certificates of `store`;
 * `override`: a name that gets no certificate at all (its on-demand order is not done), or the
 * default one (the store's has expired); `unnamed`: the name whose certificate a client that
 * sends none gets (an address's: RFC 8738), in place of the default one. */
export function serverTls(
  transport: Duplex,
  store: CertStore,
  options: TlsdOptions,
  override?: NameOverride,
  unnamed?: string,
): TLSSocket {
  // Without a name to choose by, no SNI callback: Node then pauses no handshake for a round
  // trip through JavaScript to learn that the default pair it has is the one.
  const byName = override !== undefined || store.choosesByName();
  const start = (unnamed && store.contextFor(unnamed)) || store.startContext();
  const tls = new TLSSocket(transport as Socket, {
    isServer: true,
    secureContext: start,
    // Where a name chooses, node:tls takes a turn through JavaScript anyway (the SNI callback),
    // and a certificate loaded then may have a response; else only when the pair has one.
    ...((byName || store.stapling()) && { server: staplerOf(store) as Server }),
    ...(byName && {
      SNICallback: (name: string, done: (error: Error | null, context?: SecureContext) => void) => {
        if (!isSniName(name)) return done(new Error(BAD_SNI));
        const overridden = name.toLowerCase() === override?.name;
        if (overridden && override.certificate === "none")
          return done(new Error(`no certificate for ${name} yet`));
        const context = store.contextFor(overridden ? undefined : name);
        if (context) done(null, context);
        else done(new Error(`no certificate for ${name}`));
      },
    }),
    requestCert: options.clientCert !== "none",
    rejectUnauthorized: options.clientCert === "mandatory",
    ...(options.alpn ? { ALPNProtocols: options.alpn } : {}),
  });
  acceptServerName(tls, start);
  return tls;
}

/** OpenSSL keeps the client's name in a TLS 1.2 session, and tells it again when the session
 * resumes, only when a servername callback accepted it (the engine's always does). node:tls's
 * accepts when its handle has an SNI context, which the SNICallback sets only later, in the
 * certificate callback: the one the handshake begins on is set now (it reads the hello from
 * the next tick), so a resumed session tells SSL_TLS_SNI_SERVERNAME as a full one does. */
function acceptServerName(tls: TLSSocket, context: SecureContext): void {
  const handle = (tls as unknown as { _handle?: { sni_context?: unknown } })._handle;
  if (handle) handle.sni_context = context.context;
}

/** What the program learns of the session; the client's certificate is the peer's, and only
 * one that verified (`verdict`, from checkClientCertificate) is told as an identity. */
export function sessionFacts(
  tls: TLSSocket,
  options: TlsdOptions,
  verdict: string,
): [string, string | undefined][] {
  const facts = tlsFacts(tls, options, "CLIENT", verdict === "SUCCESS");
  if (options.modSsl) facts.push(["SSL_CLIENT_VERIFY", verdict]);
  return facts;
}

/**
 * The client certificate policy (tls.Server enforces it itself, a TLSSocket made on its own
 * does not), and its verdict as mod_ssl's SSL_CLIENT_VERIFY: NONE (none asked for or sent),
 * SUCCESS, or FAILED:reason. -y throws for anything but SUCCESS; -Y takes any, or none, as
 * s6-tlsd does (an MTA's self-signed certificate must not stop its mail).
 */
export function checkClientCertificate(tls: TLSSocket, options: TlsdOptions): string {
  if (options.clientCert === "none") return "NONE";
  const mandatory = options.clientCert === "mandatory";
  if (!peerCertificate(tls).raw) {
    if (mandatory) throw new Error("client certificate required, none sent");
    return "NONE";
  }
  const error = verifyError(tls);
  if (!error) return "SUCCESS";
  const reason = tlsErrorText(error);
  if (mandatory) throw new Error(`client certificate refused: ${reason}`);
  return `FAILED:${reason}`;
}

/** OpenSSL's verdict on the peer's chain. tls.Server reads it from the same private handle to
 * set `authorized`; a TLSSocket made on its own has no public way to it. */
function verifyError(tls: TLSSocket): Error | null {
  const handle = (tls as unknown as { _handle?: { verifyError(): Error | null } })._handle;
  return handle ? handle.verifyError() : new Error("no TLS handle");
}
