// tlsd's side of certificates on demand (src/acme/): before the handshake, it peeks at the
// ClientHello (none of it taken) to learn the name and whether this is the CA's tls-alpn-01
// validator, answers the validator itself, and makes a client whose allowed name has no
// certificate yet wait (ACME_WAIT at most) while one is ordered.
import { TLSSocket } from "node:tls";
import type { SecureContext } from "node:tls";
import type { Socket } from "node:net";
import { acmeConfig } from "../acme/config.ts";
import { nameAllowed } from "../acme/name-policy.ts";
import { OnDemand } from "../acme/on-demand.ts";
import type { CertStore } from "../tls/cert-store.ts";
import { HandshakeError } from "../tls/handshake-result.ts";
import { EXIT_TLS, handshake } from "../tls/session.ts";
import { exitStatus, connectionStream } from "../ucspi/chain.ts";
import { tcpVar } from "../ucspi/env.ts";
import { onReload } from "../ucspi/reload.ts";
import { LONGEST_TIMER_MS } from "../ucspi/timers.ts";
import type { Connection, StageContext } from "../ucspi/stage.ts";
import { peek } from "../tls-sniff/peek.ts";
import { addressOfArpaName, canonicalAddress } from "../net/ip.ts";
import type { TlsdOptions } from "./options.ts";
import type { HelloHold } from "./native-session.ts";
import { native } from "../ucspi/native.ts";
import type { TlsContext } from "../ucspi/native.ts";

/** The ALPN protocol of tls-alpn-01 validation (RFC 8737). */
const ACME_TLS = "acme-tls/1";
/** How long the CA's validator has for its handshake when -K sets no limit. */
const VALIDATOR_MS = 10_000;

// One per configuration and process: under our tcpserver every connection shares its orders
// (one per name at a time), its challenges and its rate limit.
const managers = new Map<string, OnDemand>();

// tcpserver's SIGHUP: the next connection gets a new manager, which reads the account key,
// ACME_CAFILE and each certificate's dates again and asks ACME_RESOLVE and ACME_ASK afresh
// (their kept verdicts go). An order still running goes on in the old one: what every tlsd of
// a CERTDIR shares (claim files, the hour's log, challenge files) keeps the two apart.
onReload(() => managers.clear());

export function onDemandFor(ctx: StageContext): OnDemand | undefined {
  if (ctx.env["ACME_DIRECTORY"] === undefined) return undefined;
  // Keyed by what acmeConfig() reads, so that a connection with a configuration seen before
  // does not parse and check it again.
  const key = Object.keys(ctx.env)
    .filter((name) => name.startsWith("ACME_") || name === "CERTDIR")
    .sort()
    .map((name) => `${name}=${ctx.env[name] ?? ""}`)
    .join("\0");
  let manager = managers.get(key);
  const config = manager ? undefined : acmeConfig(ctx.env);
  if (config) {
    manager = new OnDemand(config, ctx.log);
    managers.set(key, manager);
  }
  return manager;
}

/** For one name, no certificate at all, or the default one in place of the store's. */
export interface NameOverride {
  name: string;
  certificate: "none" | "default";
}

export interface Prepared {
  /** The connection to make the handshake on, every byte still in it. */
  connection: Connection;
  /** Set when the connection is done (the validator was answered). */
  status?: number;
  /** A name the handshake must not serve the store's certificate for: refused (its
   * certificate is not there yet), or given the default one (the store's has expired). */
  override?: NameOverride;
  /** A PROXY header came in place of the ClientHello (this tcpserver lacks --proxy). */
  proxyHeader?: boolean;
  /** Refused before any handshake, and why. */
  refusal?: HandshakeError;
  /** A client with no name, served the certificate of this address (HelloDecision's). */
  unnamed?: string;
}

export async function beforeHandshake(
  ctx: StageContext,
  acme: OnDemand,
  store: CertStore,
  options: TlsdOptions,
): Promise<Prepared> {
  // -K bounds the wait for the hello as it bounds the handshake (0: no bound, as there).
  const limit = options.handshakeTimeoutMs || LONGEST_TIMER_MS;
  const { verdict, connection } = await peek(ctx.connection, { silenceMs: limit, helloMs: limit });
  if (verdict.kind === "proxy") return { connection, proxyHeader: true };
  // Not a hello (or none yet): the handshake itself fails it, as without ACME.
  if (verdict.kind !== "tls") return { connection };
  const { validator, ...decided } = await helloDecision(
    ctx,
    acme,
    store,
    verdict.hello.serverName,
    verdict.hello.alpn ?? [],
  );
  const challenge = validator === undefined ? undefined : acme.challengeFor(validator);
  if (validator !== undefined && !challenge) return { connection, refusal: noChallenge(validator) };
  if (challenge && validator !== undefined)
    return {
      connection,
      status: await answerValidator(ctx, connection, challenge, validator, options),
    };
  return { connection, ...decided };
}

/** What certificates on demand make of a ClientHello (either TLS engine): the CA's validator
 * to answer with the challenge of `validator`, a client refused, a name whose certificate is
 * overridden, or nothing; an order for the name is waited for first (ACME_WAIT). */
export interface HelloDecision {
  validator?: string;
  refusal?: HandshakeError;
  override?: NameOverride;
  /** The client sent no name, and is served the certificate of the address it connected to
   * (ACME_NAMES lists it: RFC 8738). */
  unnamed?: string;
}

export async function helloDecision(
  ctx: StageContext,
  acme: OnDemand,
  store: CertStore,
  name: string | undefined,
  alpn: readonly string[],
): Promise<HelloDecision> {
  if (alpn.includes(ACME_TLS)) {
    // An address's validator names it by its reverse-DNS name (RFC 8738 section 6).
    const validated = name === undefined ? undefined : (addressOfArpaName(name) ?? name);
    if (validated !== undefined && acme.challengeFor(validated)) return { validator: validated };
    // RFC 8737 section 6.2: acme-tls/1 carries no application data. Served as any client, this
    // one would get a program (a relay under tls-everywhere, which routes it here from any port)
    // and, for a name with no certificate yet, an order.
    return { refusal: noChallenge(name) };
  }
  const localIp = tcpVar(ctx.env, "LOCALIP");
  if (name === undefined) {
    // No name: the address the client asked for has a certificate where ACME_NAMES lists it.
    const address = localIp === undefined ? undefined : canonicalAddress(localIp);
    if (address === undefined || !nameAllowed(acme.config.names, address)) return {};
    const decided = await certificateFor(ctx, acme, store, address, localIp);
    if (decided.override?.certificate === "none")
      return { refusal: new HandshakeError(`no certificate for ${address} yet`, "no_certificate") };
    return decided.override ? {} : { unnamed: address };
  }
  return certificateFor(ctx, acme, store, name, localIp);
}

/** The cache's certificate for `name` (a client's, or the address of one that sent none), in
 * date; else ordered now, the client waiting; else what it gets in its place. */
async function certificateFor(
  ctx: StageContext,
  acme: OnDemand,
  store: CertStore,
  name: string,
  localIp: string | undefined,
): Promise<HelloDecision> {
  // A renewed certificate is served from the next handshake on, not a recheck later.
  acme.servedBy(store);
  const cached = store.hasCertificateFor(name);
  if (cached && !acme.expired(name)) {
    void acme.renewIfDue(name, localIp);
    return {};
  }
  const outcome = await acme.obtain(name, localIp);
  if (outcome === "ready") return {};
  // What the store has for the name now has expired: never served, the default instead.
  if (outcome === "refused" || acme.config.fallbackToDefault)
    return cached ? { override: { name, certificate: "default" } } : {};
  if (outcome === "timeout")
    ctx.log(
      `tlsd: warning: acme: ${name}: no certificate after ${acme.config.waitMs} ms; refused\n`,
    );
  return { override: { name, certificate: "none" } };
}

function noChallenge(name: string | undefined): HandshakeError {
  return new HandshakeError(
    `TLS handshake failed: ALPN acme-tls/1 (tls-alpn-01 validation) and no challenge pending for ${name ?? "(no server name)"}`,
    "other",
  );
}

/** The same on the native TLS engine (native-session.ts): the ClientHello held while an
 * order runs; the validator answered with an engine context of the challenge. */
export function engineHold(
  ctx: StageContext,
  acme: OnDemand,
  store: CertStore,
  options: TlsdOptions,
): HelloHold {
  return {
    async hello(name, alpn) {
      const { validator, ...decided } = await helloDecision(ctx, acme, store, name, alpn);
      if (validator === undefined) return decided;
      const pem = acme.challengePemFor(validator);
      if (!pem) return { refusal: noChallenge(validator) };
      let context: TlsContext | undefined;
      try {
        context = native().tlsContext(pem, pem, { alpn: [ACME_TLS] });
      } catch {
        // Being replaced: the validator tries again.
      }
      return { validator: { name: validator, context } };
    },
    validatorDone: (name, failure) => validatorDone(ctx, options, name, failure),
  };
}

/** The tls-alpn-01 handshake: the challenge certificate, ALPN acme-tls/1, then the end (the
 * validator closes at once); no program runs. */
async function answerValidator(
  ctx: StageContext,
  connection: Connection,
  challenge: SecureContext,
  name: string,
  options: TlsdOptions,
): Promise<number> {
  const tls = new TLSSocket(connectionStream(connection) as Socket, {
    isServer: true,
    secureContext: challenge,
    ALPNProtocols: [ACME_TLS],
  });
  let failure: string | undefined;
  try {
    await handshake(tls, "secure", options.handshakeTimeoutMs || VALIDATOR_MS);
  } catch (error) {
    failure = (error as Error).message;
  }
  tls.destroy();
  return validatorDone(ctx, options, name, failure);
}

/** The validator's handshake is over (`failure`: why it failed): logged; the status. */
export function validatorDone(
  ctx: StageContext,
  options: TlsdOptions,
  name: string,
  failure: string | undefined,
): number {
  if (failure && options.verbosity >= 1)
    ctx.log(`tlsd: warning: acme: tls-alpn-01 for ${name}: ${failure}\n`);
  else if (options.verbosity >= 2) ctx.log(`tlsd: info: acme: tls-alpn-01 for ${name}: answered\n`);
  return exitStatus(failure ? EXIT_TLS : 0);
}
