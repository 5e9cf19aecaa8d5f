// The server's certificates, as s6-tlsd takes them from the environment: CERTFILE/KEYFILE for
// the default pair, CERTFILE:name/KEYFILE:name per SNI name (with a one-label wildcard), and
// CADIR/CAFILE for client certificates. Files are re-read when they change on disk, and all of
// them on reload() (tcpserver's SIGHUP).
import { isIP } from "node:net";
import { readFileSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { decodeOs, namesIn, osFromBytes, osPath } from "../ucspi/os-string.ts";
import { X509Certificate, createHash } from "node:crypto";
import { createSecureContext } from "node:tls";
import type { SecureContext } from "node:tls";
import type { Env } from "../ucspi/env.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { pairProblem } from "./pair-check.ts";
import { GROUPS, protocolOptions } from "./protocol.ts";
import { native } from "../ucspi/native.ts";
import type { TlsContext } from "../ucspi/native.ts";
import { StampedRead, stampOf } from "./file-stamp.ts";
import { CHAIN_FILE, KEY_FILE, certificateNames } from "./cert-dir.ts";
import { MUST_STAPLE, mustStapleUnmet, ocspFileOf, stapleFrom, utcText } from "./ocsp-staple.ts";
import type { Staple, StapleRead } from "./ocsp-staple.ts";
import { trustReads } from "../metrics/catalog.ts";
import {
  TICKET_LIFETIME_S,
  TicketFile,
  engineTicketKeys,
  processKeys,
  shareTickets,
} from "./tickets.ts";

/** Exit codes of s6-tlsd for what goes wrong with the configuration. */
export const EXIT_CONFIG = 96;
export const EXIT_MISSING = 100;

interface Pair {
  cert: string;
  key: string;
}

export interface StoreConfig {
  /** undefined when snilevel >= 2: only named pairs. */
  fallback: Pair | undefined;
  named: Map<string, Pair>;
  /** Trust anchors for client certificates (CADIR wins over CAFILE), when asked for. */
  ca: TrustAnchors | undefined;
  /** CERTDIR: certbot's live/ layout, NAME/fullchain.pem + NAME/privkey.pem per certificate. */
  liveDir: string | undefined;
  /** CERTDIR may not be there yet: tlsd's first ACME order makes it (as the user tlsd runs as
   * by then, so that it can write there). Without ACME a missing one is a mistake. */
  liveDirMadeByOrders: boolean;
  /** $CIPHERS: a TLS 1.2 suite list in place of ours (protocol.ts). */
  ciphers: string | undefined;
  /** $TICKETFILE: session ticket keys shared with other processes (tickets.ts). */
  ticketFile: string | undefined;
  /** $CRLFILE: revocation lists for the client certificates' CAs, with the trust anchors. */
  crlFile: string | undefined;
}

export type TrustAnchors = { dir: string } | { file: string };

/** CADIR (wins) or CAFILE from env, as file names; undefined when neither is set. */
export function trustAnchorsFrom(env: Readonly<Env>): TrustAnchors | undefined {
  if (env["CADIR"] !== undefined) return { dir: filePath(env["CADIR"]) };
  if (env["CAFILE"] !== undefined) return { file: filePath(env["CAFILE"]) };
  return undefined;
}

/** Env values are byte strings (src/ucspi/env.ts); a file name is kept as a command-line word
 * is, a byte that is not UTF-8 escaped (src/ucspi/os-string.ts), and given to node:fs with
 * osPath. */
export const filePath = osFromBytes;
const path = filePath;

/** The variables storeConfig reads by name; it also reads every CERTFILE:name and KEYFILE:name
 * at snilevel 1 and 2. */
const CONFIG_NAMES = [
  "CERTFILE",
  "KEYFILE",
  "CERTDIR",
  "CADIR",
  "CAFILE",
  "ACME_DIRECTORY",
  "TICKETFILE",
  "CRLFILE",
  "CIPHERS",
];

/** What storeConfig reads of env, as one string: equal strings make equal configurations, so a
 * connection finds its store by it without making the configuration again (a dozen objects and
 * a JSON text per handshake). */
export function storeConfigInput(env: Readonly<Env>, sniLevel: number): string {
  let input = "";
  for (const name of CONFIG_NAMES) input += variableInput(name, env[name]);
  if (sniLevel >= 1)
    for (const name in env)
      if (name.startsWith("KEYFILE:") || name.startsWith("CERTFILE:"))
        input += variableInput(name, env[name]);
  return input;
}

// A value has no NUL (the environment is C strings): unset and empty stay apart.
function variableInput(name: string, value: string | undefined): string {
  return value === undefined ? `${name}\0` : `${name}=${value}\0`;
}

/** Reads the pairs and trust anchors named in env, as s6-tlsd does for its snilevel. */
export function storeConfig(env: Readonly<Env>, sniLevel: number, wantCa: boolean): StoreConfig {
  const named = new Map<string, Pair>();
  if (sniLevel >= 1) {
    for (const name of Object.keys(env)) {
      if (!name.startsWith("KEYFILE:") && !name.startsWith("CERTFILE:")) continue;
      const suffix = name.slice(name.indexOf(":") + 1);
      const host = suffix.toLowerCase();
      const cert = env[`CERTFILE:${suffix}`];
      const key = env[`KEYFILE:${suffix}`];
      if (cert === undefined || key === undefined) {
        const missing = cert === undefined ? "CERTFILE" : "KEYFILE";
        throw new FatalError(`${name} has no ${missing}:${suffix} twin`, EXIT_CONFIG);
      }
      named.set(host, { cert: path(cert), key: path(key) });
    }
  }
  const liveDir = env["CERTDIR"] === undefined ? undefined : path(env["CERTDIR"]);
  let fallback: Pair | undefined;
  if (sniLevel < 2 && !(liveDir && env["CERTFILE"] === undefined && env["KEYFILE"] === undefined)) {
    const cert = env["CERTFILE"];
    const key = env["KEYFILE"];
    if (cert === undefined) throw new FatalError("CERTFILE not set", EXIT_MISSING);
    if (key === undefined) throw new FatalError("KEYFILE not set", EXIT_MISSING);
    fallback = { cert: path(cert), key: path(key) };
  } else if (named.size === 0 && !liveDir) {
    throw new FatalError("no CERTFILE:name and KEYFILE:name pair set", EXIT_MISSING);
  }
  const ca = wantCa ? trustAnchorsFrom(env) : undefined;
  if (wantCa && !ca)
    throw new FatalError("CADIR or CAFILE must be set for client certificates", EXIT_MISSING);
  const liveDirMadeByOrders = liveDir !== undefined && env["ACME_DIRECTORY"] !== undefined;
  const ticketFile = env["TICKETFILE"] === undefined ? undefined : path(env["TICKETFILE"]);
  // Only client certificates are checked against it: without them it would do nothing.
  const crlFile = wantCa && env["CRLFILE"] !== undefined ? path(env["CRLFILE"]) : undefined;
  return {
    fallback,
    named,
    ca,
    liveDir,
    liveDirMadeByOrders,
    ciphers: env["CIPHERS"],
    ticketFile,
    crlFile,
  };
}

interface Loaded {
  context: SecureContext;
  /** The native TLS engine's context for the same pair, when the store makes them. */
  engine?: TlsContext;
  /** The certificate (chain) it was made with, and when its first one expires (read once,
   * when asked: expiries()). */
  cert: Buffer;
  notAfter?: number;
  files: string[];
  stamps: string;
  /** A file changed on disk since this context was made. */
  stale?: boolean;
  /** The OCSP response it staples, for which leaf (DER), until when, and whether its end was
   * said. */
  staple?: {
    file: string;
    der: Buffer;
    leaf: Buffer;
    until: number;
    /** Its certificate must be served with one (TLS Feature status_request). */
    mustStaple: boolean;
    endSaid?: boolean;
  };
}

/** Secure contexts for a configuration, rebuilt when one of their files changes. */
export class CertStore {
  readonly config: StoreConfig;
  private readonly contexts = new Map<string, Loaded>();
  private checkedAt = 0;
  private readonly recheckMs: number;

  /** Sessions resume only into the configuration that made them (OpenSSL checks it). */
  private readonly sessionIdContext: string;

  /** TICKETFILE's keys, when it is set; else this process's own. */
  private readonly tickets: TicketFile | undefined;

  /** CADIR or CAFILE, and CRLFILE: read once for every pair, and again when they change. */
  private readonly anchors: StampedRead<Buffer[]> | undefined;
  private readonly crl: StampedRead<string[]> | undefined;

  /** The native TLS engine's settings (tlsd --engine native): every pair gets an engine
   * context too, with these ALPN protocols. */
  private readonly engine: { alpn: readonly string[] | undefined } | undefined;

  /** Files are looked at again (one stat each) at most every `recheckMs`. TICKETFILE is read
   * now: a FatalError when it cannot serve. */
  constructor(
    config: StoreConfig,
    recheckMs = 1000,
    engine?: { alpn: readonly string[] | undefined },
  ) {
    this.config = config;
    this.recheckMs = recheckMs;
    this.engine = engine;
    this.tickets = config.ticketFile === undefined ? undefined : new TicketFile(config.ticketFile);
    const ca = config.ca;
    this.anchors =
      ca &&
      new StampedRead("dir" in ca ? ca.dir : ca.file, () => {
        trustReads.inc({ file: "dir" in ca ? "CADIR" : "CAFILE" });
        return readTrustAnchors(ca);
      });
    // Set but empty is set: a CRLFILE=$LIST whose $LIST is empty must not turn the checks off.
    const crlFile = config.crlFile;
    this.crl =
      crlFile === undefined
        ? undefined
        : new StampedRead(crlFile, () => {
            trustReads.inc({ file: "CRLFILE" });
            return revocationLists(crlFile);
          });
    this.sessionIdContext = createHash("sha256")
      .update(JSON.stringify([config.fallback, [...config.named], config.ca, config.liveDir]))
      .digest("hex")
      .slice(0, 32);
  }

  /** Lines about what serves, but not as configured (an OCSP response left out): for the
   * stage to log, once each (takeNotices). */
  private notices: string[] = [];

  takeNotices(): string[] {
    const out = this.notices;
    this.notices = [];
    return out;
  }

  private live = new Map<string, Pair>();
  private liveStamp = "";
  /** CERTDIR's certificates by directory, as expiries() gives them. */
  private liveExpiries: Expiry[] = [];

  /** Loads every pair once, so that a bad file is reported before any client comes. */
  check(): void {
    if (this.config.fallback) this.load(this.config.fallback);
    for (const pair of this.config.named.values()) this.load(pair);
    this.rescanLive();
  }

  /** The pair for a name: a CERTFILE:name pair, else a certificate of CERTDIR that has it. */
  private pairFor(name: string): Pair | undefined {
    return this.config.named.get(name) ?? this.live.get(name);
  }

  /** certbot's live/ directory: each NAME/ holds fullchain.pem and privkey.pem; a
   * certificate serves every DNS name of its subjectAltName (and its directory's name). */
  private rescanLive(): void {
    const dir = this.config.liveDir;
    if (!dir) return;
    const stamp = stampOf([dir]);
    if (stamp === this.liveStamp) return;
    this.liveStamp = stamp;
    const live = new Map<string, Pair>();
    const expiries: Expiry[] = [];
    let entries: string[] = [];
    try {
      entries = certificateNames(dir);
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
      if (!(missing && this.config.liveDirMadeByOrders))
        throw new FatalError(`unable to read CERTDIR ${dir}: ${causeText(error)}`, 111);
    }
    for (const entry of entries) {
      let names = [entry.toLowerCase()];
      try {
        // Resolved once: where NAME is a symlink to a version (tlsd's own orders), the key
        // and the chain are read from that one version even if NAME moves on meanwhile.
        // (.native: Node's own realpathSync reads a name's bytes as UTF-8, and finds nothing.)
        const real = decodeOs(
          realpathSync.native(osPath(join(dir, entry)), { encoding: "buffer" }),
        );
        const pair = { cert: join(real, CHAIN_FILE), key: join(real, KEY_FILE) };
        const certificate = new X509Certificate(readFileSync(osPath(pair.cert)));
        const san = certificate.subjectAltName ?? "";
        expiries.push({
          name: entry,
          file: join(dir, entry, CHAIN_FILE),
          notAfter: epochSeconds(certificate),
        });
        names = names.concat(
          san
            .split(", ")
            .filter((s) => s.startsWith("DNS:"))
            .map((s) => s.slice(4).toLowerCase()),
        );
        for (const name of names) if (!live.has(name)) live.set(name, pair);
      } catch {
        continue; // not a certificate directory
      }
    }
    this.live = live;
    this.liveExpiries = expiries;
  }

  /**
   * Each certificate this store serves and when it expires, for tcpserver --metrics: CERTFILE
   * as "default", each CERTFILE:name under its name, each CERTDIR certificate under its
   * directory's name. What a handshake would get now: a file changed on disk is read again.
   */
  expiries(): Expiry[] {
    this.recheck();
    const out: Expiry[] = [];
    const add = (name: string, pair: Pair) => {
      const notAfter = this.notAfterOf(pair);
      if (notAfter !== undefined) out.push({ name, file: pair.cert, notAfter });
    };
    if (this.config.fallback) add("default", this.config.fallback);
    for (const [name, pair] of this.config.named) add(name, pair);
    return out.concat(this.liveExpiries);
  }

  private notAfterOf(pair: Pair): number | undefined {
    const loaded = this.contexts.get(contextName(pair));
    const served = () => (loaded ? (loaded.notAfter ??= notAfterOf(loaded.cert)) : undefined);
    if (loaded && !loaded.stale) return served();
    try {
      return notAfterOf(readFileSync(osPath(pair.cert)));
    } catch {
      return served();
    }
  }

  /** The OCSP responses stapled now, and until when (seconds since the epoch). */
  staples(): { file: string; until: number }[] {
    this.recheck();
    const out: { file: string; until: number }[] = [];
    for (const loaded of this.contexts.values())
      if (loaded.staple) out.push({ file: loaded.staple.file, until: loaded.staple.until });
    return out;
  }

  /** Whether a certificate loaded now has a response to staple (node:tls then asks, stapleFor). */
  stapling(): boolean {
    for (const loaded of this.contexts.values()) if (loaded.staple) return true;
    return false;
  }

  /** The response to staple with the certificate whose leaf is `leaf` (DER), if it has one that
   * is still valid: what node:tls's OCSPRequest asks (the engine's contexts carry their own). */
  stapleFor(leaf: Buffer): Buffer | undefined {
    const now = Date.now() / 1000;
    for (const loaded of this.contexts.values()) {
      const staple = loaded.staple;
      if (staple && now < staple.until && staple.leaf.equals(leaf)) return staple.der;
    }
    return undefined;
  }

  /** Whether a certificate of its own (not the default) serves `name`. */
  hasCertificateFor(servername: string): boolean {
    this.recheck();
    return this.ownPairFor(servername.toLowerCase()) !== undefined;
  }

  /**
   * tcpserver's SIGHUP: CERTDIR is scanned again and every certificate, key and CA file loaded
   * so far is read again now, whatever its stamp says (a file rewritten in place can keep its
   * size and mtime). Returns why a pair could not be: the context loaded before still serves it.
   * Contexts no name leads to any more (an older version of a CERTDIR certificate) are dropped.
   */
  reload(): string[] {
    const problems: string[] = [];
    const tickets = this.tickets?.reload();
    if (tickets) problems.push(tickets);
    this.anchors?.forget();
    this.crl?.forget();
    this.liveStamp = "";
    try {
      this.rescanLive();
    } catch (error) {
      problems.push(causeText(error));
    }
    this.checkedAt = Date.now();
    const wanted = new Map<string, Pair>();
    for (const pair of [this.config.fallback, ...this.config.named.values(), ...this.live.values()])
      if (pair) wanted.set(contextName(pair), pair);
    for (const name of [...this.contexts.keys()]) {
      const pair = wanted.get(name);
      if (!pair) {
        this.contexts.delete(name);
        continue;
      }
      try {
        this.build(name, pair, this.contexts.get(name));
      } catch (error) {
        problems.push(causeText(error));
      }
    }
    return problems;
  }

  /** Looks at CERTDIR again now (a certificate was just added to it). */
  refresh(): void {
    this.liveStamp = "";
    this.checkedAt = 0;
    this.recheck();
  }

  /** The pair for an SNI name: exact, then `*.` + parent. */
  private ownPairFor(name: string): Pair | undefined {
    const exact = this.pairFor(name);
    // An address (an on-demand certificate's, RFC 8738) is matched by no `*.` entry.
    if (exact || isIP(name)) return exact;
    const dot = name.indexOf(".");
    const parent = name.slice(dot + 1);
    return dot > 0 && parent.includes(".") ? this.pairFor(`*.${parent}`) : undefined;
  }

  /** Whether any certificate is chosen by the client's name (CERTFILE:name pairs, CERTDIR), or
   * none at all without one (snilevel 2); when neither, every client gets the default pair. */
  choosesByName(): boolean {
    return (
      this.config.named.size > 0 ||
      this.config.liveDir !== undefined ||
      this.config.fallback === undefined
    );
  }

  /** The context for an SNI name (or none): exact, then `*.` + parent, then the default. */
  contextFor(servername: string | undefined): SecureContext | undefined {
    return this.loadedFor(servername)?.context;
  }

  /** The context a node:tls handshake begins on: the default pair's, else (-k 2, CERTDIR
   * alone) one with no certificate, until the client's name picks one. OpenSSL keeps the
   * first context's ticket keys, session id context and session lifetime for the whole
   * handshake, and its suites, groups and options for the hello, whichever context the name
   * picks: Node's own default context made every ticket under a key of its own (no session
   * resumed) and took its own TLS 1.2 suites. */
  startContext(): SecureContext {
    const fallback = this.contextFor(undefined);
    if (fallback) return fallback;
    if (!this.start) {
      this.start = createSecureContext({
        ...protocolOptions(this.config.ciphers),
        sessionIdContext: this.sessionIdContext,
        sessionTimeout: TICKET_LIFETIME_S,
      });
      shareTickets(this.start, this.tickets);
    }
    return this.start;
  }

  private start: SecureContext | undefined;

  /** The same for the native TLS engine (a store made with its settings). */
  engineContextFor(servername: string | undefined): TlsContext | undefined {
    return this.loadedFor(servername)?.engine;
  }

  /** The certificate (PEM chain) an engine context of this store serves (--mod-ssl's own). */
  engineCertificate(context: TlsContext): Buffer | undefined {
    return this.engineCertificates.get(context);
  }

  private readonly engineCertificates = new WeakMap<TlsContext, Buffer>();

  /** A context with no certificate, for a handshake that begins before this store has any
   * (certificates on demand, the first not ordered yet): the client's name then chooses, in
   * onHello. Made again when the trust it carries changes. */
  engineBare(): TlsContext | undefined {
    if (!this.engine) return undefined;
    const stamps: string[] = [];
    const ca = shared(this.anchors, [], stamps);
    const crl = shared(this.crl, [], stamps);
    const key = stamps.join("|");
    if (this.bare?.key !== key)
      this.bare = { key, context: this.engineContext(null, null, ca, crl) };
    return this.bare.context;
  }

  private bare: { key: string; context: TlsContext } | undefined;

  /** The engine's ticket keys brought up to date (a rotation, TICKETFILE read again): the
   * contexts of this store take them from the next handshake on. */
  engineTickets(): void {
    engineTicketKeys(this.tickets ?? processKeys);
  }

  /** An engine context to begin a handshake with where there is no default pair (-k 2, CERTDIR
   * alone): the client's name then picks the one that serves. */
  engineStart(): TlsContext | undefined {
    this.recheck();
    const first = this.config.fallback ?? [...this.config.named.values(), ...this.live.values()][0];
    return first && this.load(first).engine;
  }

  private loadedFor(servername: string | undefined): Loaded | undefined {
    this.recheck();
    const own = servername ? this.ownPairFor(servername.toLowerCase()) : undefined;
    if (own) return this.load(own);
    return this.config.fallback ? this.load(this.config.fallback) : undefined;
  }

  private recheck() {
    const now = Date.now();
    if (now - this.checkedAt < this.recheckMs) return;
    this.checkedAt = now;
    for (const loaded of this.contexts.values()) {
      if (stampOf(loaded.files) !== loaded.stamps) loaded.stale = true;
      const staple = loaded.staple;
      if (staple && !staple.endSaid && now / 1000 >= staple.until) {
        staple.endSaid = true;
        this.notices.push(
          `OCSP response ${staple.file} expired at ${utcText(staple.until)}: no longer stapled (a newer one is read when the file changes)${staple.mustStaple ? `; ${MUST_STAPLE}` : ""}`,
        );
      }
    }
    this.tickets?.refresh();
    try {
      this.rescanLive();
    } catch {
      // CERTDIR went away for a moment: keep the names we know.
    }
  }

  /** One context per certificate and key, whichever names lead to it. */
  private load(pair: Pair): Loaded {
    const name = contextName(pair);
    const cached = this.contexts.get(name);
    if (cached && !cached.stale) return cached;
    if (cached) {
      // Mid-replacement (a new key beside the old certificate, say), keep serving the pair
      // that worked; the next look at the files tries again.
      try {
        return this.build(name, pair, cached);
      } catch {
        cached.stale = false;
        cached.stamps = "";
        return cached;
      }
    }
    return this.build(name, pair);
  }

  /** `before`: the context this one replaces, whose response may go on being stapled. */
  private build(name: string, pair: Pair, before?: Loaded): Loaded {
    const ocspFile = ocspFileOf(pair.cert);
    const files = [pair.cert, pair.key, ocspFile];
    const stamps = [stampOf(files)];
    const caCerts = shared(this.anchors, files, stamps);
    const crl = shared(this.crl, files, stamps);
    let context: SecureContext;
    let engine: TlsContext | undefined;
    const { cert, key } = readPair(pair);
    const { staple, problem } = keepGoodStaple(stapleFrom(ocspFile, cert), before, cert);
    try {
      context = createSecureContext({
        cert,
        key,
        ...protocolOptions(this.config.ciphers),
        sessionIdContext: this.sessionIdContext,
        sessionTimeout: TICKET_LIFETIME_S,
        ...(caCerts ? { ca: caCerts } : {}),
        // Node sets OpenSSL's CRL_CHECK and CRL_CHECK_ALL with them: every CA of a client's
        // chain needs its list, as for nginx's ssl_crl.
        ...(crl ? { crl } : {}),
      });
      if (this.engine) engine = this.engineContext(cert, key, caCerts, crl, staple);
    } catch (error) {
      if (error instanceof FatalError) throw error;
      if (crl && this.crl) checkRevocationLists(crl, this.crl.file);
      throw new FatalError(
        `unable to use certificate ${pair.cert} with key ${pair.key}: ${causeText(error)}`,
        EXIT_CONFIG,
      );
    }
    shareTickets(context, this.tickets);
    if (problem) this.notices.push(problem);
    const mustStaple = native().ocspMustStaple(cert);
    if (mustStaple && !staple) this.notices.push(mustStapleUnmet(pair.cert, ocspFile));
    const loaded: Loaded = { context, cert, files, stamps: stamps.join("|") };
    if (staple) {
      const leaf = leafOf(cert);
      loaded.staple = { file: ocspFile, der: staple.der, leaf, until: staple.until, mustStaple };
    }
    if (engine) {
      loaded.engine = engine;
      this.engineCertificates.set(engine, cert);
    }
    this.contexts.set(name, loaded);
    return loaded;
  }

  /** protocol.ts's settings, as the engine takes them (the TLS 1.2 suites, the groups). */
  private engineContext(
    cert: Buffer | null,
    key: Buffer | null,
    ca: Buffer[] | undefined,
    crl: string[] | undefined,
    staple?: Staple,
  ): TlsContext {
    const alpn = this.engine?.alpn;
    return native().tlsContext(cert, key, {
      ciphers: protocolOptions(this.config.ciphers).ciphers,
      groups: GROUPS,
      sessionIdContext: this.sessionIdContext,
      sessionTimeout: TICKET_LIFETIME_S,
      ticketKeys: engineTicketKeys(this.tickets ?? processKeys),
      ...(alpn ? { alpn } : {}),
      ...(ca ? { ca } : {}),
      ...(crl ? { crl } : {}),
      ...(staple ? { ocsp: staple.der, ocspUntil: staple.until } : {}),
    });
  }
}

/** A response file that changed into one that may not be stapled, but does not say the
 * certificate is revoked (junk, a responder's "tryLater", an older response), leaves the good
 * one read before stapled until its end, as long as the certificate is the same: a failed
 * fetch must not take stapling away while a valid response is at hand. */
function keepGoodStaple(read: StapleRead, before: Loaded | undefined, cert: Buffer): StapleRead {
  const kept = before?.staple;
  if (read.staple || !read.problem || read.revoked || !kept) return read;
  if (Date.now() / 1000 >= kept.until || !kept.leaf.equals(leafOf(cert))) return read;
  return {
    staple: { der: kept.der, until: kept.until },
    problem: `${read.problem}; the response read before is stapled until ${utcText(kept.until)}`,
  };
}

/** The first certificate of a PEM chain, in DER. */
function leafOf(chain: Buffer): Buffer {
  return new X509Certificate(chain).raw;
}

/** What a shared read holds now; its file and stamp go with the context's own (recheck()). */
function shared<T>(read: StampedRead<T> | undefined, files: string[], stamps: string[]) {
  if (!read) return undefined;
  const { value, stamp } = read.get();
  files.push(read.file);
  stamps.push(stamp);
  return value;
}

/** The CRLs of a PEM file, one each: OpenSSL reads only the first of a bundle given whole. A
 * file that holds none is a configuration error naming it. */
export function revocationLists(file: string): string[] {
  const lists = readOrFail(file, "revocation lists").toString("latin1").match(CRL_PEM) ?? [];
  if (lists.length === 0)
    throw new FatalError(`unable to use revocation lists ${file}: no X509 CRL in it`, EXIT_CONFIG);
  return lists;
}

const CRL_PEM = /-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----/g;

/** When a context could not be made: a list OpenSSL refuses is named as the cause. */
function checkRevocationLists(lists: string[], file: string): void {
  try {
    createSecureContext({ crl: lists });
  } catch (error) {
    throw new FatalError(
      `unable to use revocation lists ${file}: ${causeText(error)}`,
      EXIT_CONFIG,
    );
  }
}

/** A certificate served, and when it expires: seconds since the epoch. */
export interface Expiry {
  name: string;
  file: string;
  notAfter: number;
}

function epochSeconds(certificate: X509Certificate): number {
  return Math.floor(certificate.validToDate.getTime() / 1000);
}

/** When the first certificate of a PEM chain expires; throws when there is none. */
function notAfterOf(pem: Buffer): number {
  return epochSeconds(new X509Certificate(pem));
}

/** The key of a pair's context: one per certificate and key. */
function contextName(pair: Pair): string {
  return `${pair.cert}\0${pair.key}`;
}

/** Trust anchors: every file of CADIR (one certificate each), or the CAFILE bundle. Node skips
 * what it cannot read as a certificate, without a word: none at all, or one it cannot read, is
 * a configuration error here, not every client's certificate refused as self-signed. */
export function readTrustAnchors(ca: TrustAnchors): Buffer[] {
  const anchors =
    "dir" in ca
      ? readAll(ca.dir).map((f) => readOrFail(f, "trust anchor"))
      : [readOrFail(ca.file, "trust anchors")];
  const where = "dir" in ca ? `CADIR ${ca.dir}` : `CAFILE ${ca.file}`;
  const blocks = anchors.flatMap((pem) => pem.toString("latin1").match(CERT_PEM) ?? []);
  if (blocks.length === 0)
    throw new FatalError(`unable to use trust anchors ${where}: no certificate in it`, EXIT_CONFIG);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch {
      const which = `certificate ${i + 1} of the ${blocks.length} in it`;
      throw new FatalError(
        `unable to use trust anchors ${where}: ${which} cannot be read`,
        EXIT_CONFIG,
      );
    }
  });
  return anchors;
}

const CERT_PEM =
  /-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----[^-]*-----END [A-Z0-9 ]*CERTIFICATE-----/g;

/** A certificate and its key, read and checked: a FatalError naming both when they cannot go
 * together (OpenSSL's own words would be "PEM routines::no start line"). */
export function readPair(pair: Pair): { cert: Buffer; key: Buffer } {
  const cert = readOrFail(pair.cert, "certificate");
  const key = readOrFail(pair.key, "key");
  const problem = pairProblem(cert, key);
  if (problem)
    throw new FatalError(
      `unable to use certificate ${pair.cert} with key ${pair.key}: ${problem}`,
      EXIT_CONFIG,
    );
  return { cert, key };
}

export function readOrFail(file: string, what: string): Buffer {
  try {
    return readFileSync(osPath(file));
  } catch (error) {
    throw new FatalError(`unable to read ${what} ${file}: ${causeText(error)}`, 111);
  }
}

function readAll(dir: string): string[] {
  try {
    return namesIn(dir)
      .filter((f) => !f.startsWith("."))
      .map((f) => join(dir, f))
      .filter((f) => statSync(osPath(f)).isFile());
  } catch (error) {
    throw new FatalError(`unable to read CADIR ${dir}: ${causeText(error)}`, 111);
  }
}
