// Certificates on demand: the first handshake for an allowed name that has no certificate yet
// waits (a bounded time) while one is ordered; every other connection goes on meanwhile, and
// connections for the same name share the one order. Certificates are renewed in the
// background when a handshake finds one near its end.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { SecureContext } from "node:tls";
import { acmeOrders } from "../metrics/catalog.ts";
import { causeText } from "../ucspi/errors.ts";
import { osPath } from "../ucspi/os-string.ts";
import { CHAIN_FILE, KEY_FILE } from "../tls/cert-dir.ts";
import { toBytes } from "../ucspi/env.ts";
import type { AcmeConfig } from "./config.ts";
import { Issuer } from "./issuer.ts";
import { Ledger, REFRESH_MS, STALE_MS, mtimeOf } from "./ledger.ts";
import { NamePolicy } from "./name-policy.ts";
import { renewalMoment } from "./renewal-info.ts";
import { RenewalRecords } from "./renewal-records.ts";
import { endText, runSiteProgram } from "./site-program.ts";
import type { RenewalRecord } from "./renewal-records.ts";

export type Outcome =
  /** The certificate is in the cache now. */
  | "ready"
  /** The name is not on ACME_NAMES: no order. */
  | "refused"
  /** The order failed, or the rate limit refused it (logged). */
  | "failed"
  /** Still being ordered after ACME_WAIT; the order goes on. */
  | "timeout";

// tcpserver --metrics: how this process's orders ended (another tlsd's are counted there).
const ISSUED = { result: "issued" };
const FAILED = { result: "failed" };
const RATE_LIMITED = { result: "rate_limited" };

/** How often a tlsd waiting for another's order looks for its certificate. */
const OTHER_POLL_MS = 200;
/** After a failed renewal (or for a file that is not ours), the next look waits this long. */
const RETRY_MS = 60_000;
/** After a failed question for a renewal window, the next waits this long; a CA without ARI
 * (or that does not know the certificate) is asked again after NO_ARI_MS. */
const ASK_AGAIN_MS = 3_600_000;
const NO_ARI_MS = 24 * 3_600_000;
/** How long ACME_HOOK may run before it is killed. */
const HOOK_TIMEOUT_MS = 60_000;

interface Times {
  renewAt: number;
  /** renewAt from the certificate's own dates (a third of its lifetime, or ACME_RENEW_BEFORE). */
  ownRenewAt: number;
  expiresAt: number;
  /** Its serial (hex), for the CA's renewal window kept on disk. */
  serial?: string;
  /** When to ask the CA for its renewal window (again). */
  askAt: number;
  /** Its ARI identifier, once the CA was asked: the order that renews it replaces it. */
  certificateId?: string;
}

export class OnDemand {
  readonly config: AcmeConfig;
  private readonly issuer: Issuer;
  private readonly ledger: Ledger;
  private readonly log: (line: string) => void;
  private readonly policy: NamePolicy;
  private readonly inflight = new Map<string, Promise<void>>();
  /** Each cached certificate's renewal and expiry times, once its file has been read. */
  private readonly times = new Map<string, Times>();
  /** What the CA said of renewing each certificate (ARI), shared by every tlsd of the cache. */
  private readonly renewals: RenewalRecords;
  /** Names whose renewal information is being asked for. */
  private readonly asking = new Set<string>();
  /** When a failed renewal may be tried again. */
  private readonly retryAt = new Map<string, number>();

  /** log: complete lines for stderr (`tlsd: ...`), as a stage's ctx.log. */
  constructor(config: AcmeConfig, log: (line: string) => void) {
    this.config = config;
    this.issuer = new Issuer(config);
    this.ledger = new Ledger(dirname(config.accountKeyFile), config.ordersPerHour);
    this.log = log;
    this.policy = new NamePolicy(config, log);
    this.renewals = new RenewalRecords(join(dirname(config.accountKeyFile), "renewal"));
  }

  /** Stores that serve this cache: each re-reads it as soon as a certificate is written. */
  private readonly stores = new Set<{ refresh(): void }>();

  servedBy(store: { refresh(): void }): void {
    this.stores.add(store);
  }

  /** The tls-alpn-01 certificate to show the CA's validator for `name`, while one is wanted. */
  challengeFor(name: string): SecureContext | undefined {
    return this.issuer.challengeFor(name);
  }

  /** The same as PEM (key, then certificate), for the native TLS engine. */
  challengePemFor(name: string): Buffer | undefined {
    return this.issuer.challengePemFor(name);
  }

  /** Makes sure the cache holds a certificate for `name`, waiting ACME_WAIT at most (the name
   * policy's own checks included); `localIp` is the address its client connected to. */
  async obtain(name: string, localIp?: string): Promise<Outcome> {
    if (!(await this.policy.allows(name, localIp))) return "refused";
    const order = this.order(name);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.config.waitMs);
    });
    const done = order.then(
      (): Outcome => "ready",
      (): Outcome => "failed",
    );
    try {
      return await Promise.race([done, waited]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether `name`'s cached certificate has expired (nobody asked for it while it was due
   * for renewal): its client then waits for a new one as for a first one (when the name
   * policy still allows it: obtain() asks). A certificate not from the cache never expires
   * here. */
  expired(name: string): boolean {
    return Date.now() >= this.timesOf(name).expiresAt;
  }

  /** Renews `name`'s cached certificate in the background when it is near its end (or when
   * the CA's renewal window says), if the name policy still allows it. */
  renewIfDue(name: string, localIp?: string): void {
    const now = Date.now();
    if (this.inflight.has(name)) return;
    const times = this.timesOf(name);
    this.askRenewalInfo(name, times, localIp);
    if (now < (this.retryAt.get(name) ?? 0) || now < times.renewAt) return;
    // Until it works, the old certificate serves; a failed renewal is tried again later.
    this.retryAt.set(name, now + RETRY_MS);
    void this.policy.allows(name, localIp).then((allowed) => {
      if (!allowed || this.inflight.has(name)) return;
      const expires = new Date(times.expiresAt).toISOString();
      this.log(`tlsd: info: acme: renewing ${name} (expires ${expires})\n`);
      this.order(name, times.certificateId).catch(() => {
        // logged by order()
      });
    });
  }

  /** Asks the CA when `name`'s certificate should be renewed (ARI, RFC 9773), in the
   * background, when the last answer (this tlsd's or another's) says it is time to ask again;
   * renews if the answer makes it due. Without an answer the certificate's own dates decide. */
  private askRenewalInfo(name: string, times: Times, localIp?: string): void {
    const now = Date.now();
    if (times.serial === undefined || now < times.askAt || this.asking.has(name)) return;
    const serial = times.serial;
    const current = () => this.times.get(name) === times;
    const keep = (record: RenewalRecord) => {
      if (!current()) return;
      Object.assign(times, this.withRecord(times, record));
      try {
        this.renewals.write(name, record);
      } catch (error) {
        this.log(
          `tlsd: warning: acme: ${name}: unable to keep the CA's renewal window: ${causeText(error)}\n`,
        );
      }
    };
    // Another tlsd of the CERTDIR (a worker, a tlsd per connection) may have asked meanwhile;
    // and while this one asks, the others wait an hour, also if this one ends first (its
    // session over) with nothing to write.
    const kept = this.renewals.read(name);
    if (kept?.serial === serial && now < kept.askAt) {
      Object.assign(times, this.withRecord(times, kept));
      return;
    }
    this.asking.add(name);
    keep({ ...(kept?.serial === serial ? kept : { serial }), askAt: now + ASK_AGAIN_MS });
    void (async () => {
      const pem = readFileSync(osPath(join(this.config.cacheDir, name, CHAIN_FILE)), "latin1");
      return this.issuer.renewalInfo(pem);
    })()
      .then(
        (info) => {
          if (!info) return keep({ serial, askAt: Date.now() + NO_ARI_MS });
          const { window } = info;
          const before = this.renewals.read(name);
          const same =
            before?.serial === serial && before.start === window.start && before.end === window.end;
          const moment =
            same && before.moment !== undefined
              ? before.moment
              : renewalMoment(window, Math.random());
          if (!same && current()) {
            const at = (t: number) => new Date(t).toISOString();
            const why = window.explanationUrl ? ` (the CA explains: ${window.explanationUrl})` : "";
            this.log(
              `tlsd: info: acme: ${name}: the CA's renewal window is ${at(window.start)} to ${at(window.end)}; renewing at ${at(moment)}${why}\n`,
            );
          }
          keep({
            serial,
            askAt: info.askAgainAt,
            certificateId: info.certificateId,
            start: window.start,
            end: window.end,
            moment,
          });
          if (current() && Date.now() >= times.renewAt) this.renewIfDue(name, localIp);
        },
        (error: unknown) => {
          this.log(
            `tlsd: warning: acme: ${name}: no renewal window from the CA: ${causeText(error)}\n`,
          );
          // A window the CA gave before still holds.
          keep({
            ...(kept?.serial === serial ? kept : { serial }),
            askAt: Date.now() + ASK_AGAIN_MS,
          });
        },
      )
      .finally(() => this.asking.delete(name));
  }

  /** `times` with what the CA said of renewing it: a moment in its window replaces the third
   * of the lifetime left; ACME_RENEW_BEFORE, when set, still renews no later than it says. */
  private withRecord(times: Times, record: RenewalRecord): Times {
    const renewAt =
      record.moment === undefined
        ? times.ownRenewAt
        : this.config.renewBeforeMs === undefined
          ? record.moment
          : Math.min(record.moment, times.ownRenewAt);
    return { ...times, renewAt, askAt: record.askAt, certificateId: record.certificateId };
  }

  /** When `name`'s cached certificate is due for renewal and when it expires, read from its
   * file once per certificate (then only compared, per handshake), with what the CA said of
   * it; never, for a certificate that is not in the cache (a CERTFILE:name pair, say). */
  private timesOf(name: string): Times {
    let times = this.times.get(name);
    if (times) return times;
    try {
      const cert = new X509Certificate(
        readFileSync(osPath(join(this.config.cacheDir, name, CHAIN_FILE))),
      );
      const from = Date.parse(cert.validFrom);
      const to = Date.parse(cert.validTo);
      const own = to - (this.config.renewBeforeMs ?? (to - from) / 3);
      times = { renewAt: own, ownRenewAt: own, expiresAt: to, serial: cert.serialNumber, askAt: 0 };
      const record = this.renewals.read(name);
      if (record && record.serial === times.serial) times = this.withRecord(times, record);
    } catch {
      times = { renewAt: Infinity, ownRenewAt: Infinity, expiresAt: Infinity, askAt: Infinity };
    }
    this.times.set(name, times);
    return times;
  }

  /** A new certificate for `name` is in the cache: its times are read again, and the stores
   * that serve the cache re-read it now. */
  private written(name: string): void {
    this.times.delete(name);
    this.retryAt.delete(name);
    for (const store of this.stores) store.refresh();
  }

  /** ACME_HOOK, after `name`'s new certificate is in place: with its files' paths, for a
   * daemon of the site's that serves it too (a reload); in the background, its end logged. */
  private async runHook(hook: string, name: string): Promise<void> {
    const dir = join(this.config.cacheDir, name);
    const end = await runSiteProgram(hook, name, this.config.searchPath, HOOK_TIMEOUT_MS, {
      ACME_CERTFILE: toBytes(join(dir, CHAIN_FILE)),
      ACME_KEYFILE: toBytes(join(dir, KEY_FILE)),
    });
    if (end.ran && end.code === 0) this.log(`tlsd: info: acme: ${name}: ACME_HOOK ran\n`);
    else this.log(`tlsd: warning: acme: ${name}: ACME_HOOK failed: ${endText(end)}\n`);
  }

  /** One order per name at a time (across every tlsd of this CERTDIR), within the rate
   * limit; logs how it went. */
  private order(name: string, replaces?: string): Promise<void> {
    let running = this.inflight.get(name);
    if (running) return running;
    const claim = this.ledger.claim(name);
    if (claim === "limited") {
      acmeOrders.inc(RATE_LIMITED);
      this.log(
        `tlsd: warning: acme: ${name}: not ordered: ACME_RATE (${this.config.ordersPerHour} an hour) reached\n`,
      );
      return Promise.reject(new Error("rate limit"));
    }
    running = claim === "busy" ? this.otherOrder(name) : this.ownOrder(name, replaces);
    const forget = () => this.inflight.delete(name);
    running.then(forget, forget);
    this.inflight.set(name, running);
    return running;
  }

  private ownOrder(name: string, replaces?: string): Promise<void> {
    const started = Date.now();
    // The claim stays fresh while the order runs: another tlsd takes over only a dead one's.
    const keepFresh = setInterval(() => this.ledger.refresh(name), REFRESH_MS);
    keepFresh.unref();
    this.log(`tlsd: info: acme: ordering a certificate for ${name}\n`);
    return this.issuer
      .issue(name, replaces)
      .then(
        () => {
          acmeOrders.inc(ISSUED);
          this.log(`tlsd: info: acme: ${name}: issued in ${Date.now() - started} ms\n`);
          this.written(name);
          if (this.config.hook) void this.runHook(this.config.hook, name);
        },
        (error: unknown) => {
          acmeOrders.inc(FAILED);
          const cause = causeText(error);
          this.log(`tlsd: warning: acme: ${name}: order failed: ${cause}\n`);
          this.ledger.failed(name, cause);
          throw error;
        },
      )
      .finally(() => {
        clearInterval(keepFresh);
        this.ledger.release(name);
      });
  }

  /** Another tlsd orders `name`: resolves once its certificate is written, rejects when that
   * order ends without one, saying why as that tlsd did (its line is in its own log only, and
   * this one's client was refused without a cause). */
  private otherOrder(name: string): Promise<void> {
    this.log(`tlsd: info: acme: ${name}: being ordered by another tlsd; waiting for it\n`);
    const file = join(this.config.cacheDir, name, CHAIN_FILE);
    const before = mtimeOf(file);
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const look = () => {
        if (mtimeOf(file) > before) {
          this.written(name);
          return resolve();
        }
        if (!this.ledger.ordering(name) || Date.now() - started > STALE_MS) {
          const cause = this.ledger.failure(name, started);
          const why = cause
            ? `the other tlsd's order failed: ${cause}`
            : "the other tlsd's order ended without a certificate";
          this.log(`tlsd: warning: acme: ${name}: ${why}\n`);
          return reject(new Error(why));
        }
        setTimeout(look, OTHER_POLL_MS).unref();
      };
      look();
    });
  }
}
