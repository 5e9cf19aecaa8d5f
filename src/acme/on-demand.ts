// Certificates on demand: the first handshake for an allowed name that has no certificate yet
// waits (a bounded time) while one is ordered; every other connection goes on meanwhile, and
// connections for the same name share the one order. Certificates are renewed in the
// background when a handshake finds one due (renewal-schedule.ts: near its end, or when the
// CA's renewal window says), and ACME_HOOK runs after each one installed.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { SecureContext } from "node:tls";
import { acmeOrders } from "../metrics/catalog.ts";
import { causeText } from "../ucspi/errors.ts";
import { CHAIN_FILE, KEY_FILE } from "../tls/cert-dir.ts";
import { toBytes } from "../ucspi/env.ts";
import { osPath } from "../ucspi/os-string.ts";
import { onStop } from "../ucspi/stop.ts";
import { sniMatches } from "../tls/sni-pattern.ts";
import type { AcmeConfig } from "./config.ts";
import { Issuer } from "./issuer.ts";
import { Ledger, REFRESH_MS, mtimeOf } from "./ledger.ts";
import { NamePolicy } from "./name-policy.ts";
import { RenewalSchedule } from "./renewal-schedule.ts";
import { endText, runSiteProgram } from "./site-program.ts";

/** How a renewal went: "failed" and "refused" (by the name policy) are logged. */
export type Renewal = "renewed" | "failed" | "refused" | "not due";

const outcomeOf = (order: Promise<void>): Promise<Renewal> =>
  order.then(
    () => "renewed",
    () => "failed",
  );

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
/** How long it follows an order whose claim stays fresh: the order's own steps are bounded
 * (10 s a request to the CA, ACME_DNS_HOOK's 180 s, ACME_DNS_WAIT), so this only stops a wait
 * on an owner that keeps its claim and never ends. */
const FOLLOW_MS = 10 * 60_000;
/** After a failed renewal (or for a file that is not ours), the next look waits this long. */
const RETRY_MS = 60_000;
/** How many certificates tls-keygen renew renews at once: a CERTDIR of hundreds due together
 * (a CA's incident, its renewal window moved for all) takes minutes, not their orders in a row;
 * ACME_RATE still bounds them. */
const RENEW_AT_ONCE = 4;
/** How long ACME_HOOK may run before it is killed. */
const HOOK_TIMEOUT_MS = 60_000;

export class OnDemand {
  readonly config: AcmeConfig;
  private readonly issuer: Issuer;
  private readonly ledger: Ledger;
  private readonly log: (line: string) => void;
  private readonly policy: NamePolicy;
  private readonly inflight = new Map<string, Promise<void>>();
  /** When each cached certificate is due for renewal and expires (the CA's window too). */
  private readonly schedule: RenewalSchedule;
  /** When a failed renewal may be tried again. */
  private readonly retryAt = new Map<string, number>();

  /** log: complete lines for stderr (`tlsd: ...`), as a stage's ctx.log. */
  constructor(config: AcmeConfig, log: (line: string) => void) {
    this.config = config;
    this.issuer = new Issuer(config, log);
    this.ledger = new Ledger(dirname(config.accountKeyFile), config.ordersPerHour);
    this.log = log;
    this.policy = new NamePolicy(config, log);
    this.schedule = new RenewalSchedule(config, this.issuer, log, (name, localIp) => {
      void this.renewIfDue(name, localIp);
    });
  }

  /** Stores that serve this cache: each re-reads it as soon as a certificate is written. */
  private readonly stores = new Set<{ refresh(): void }>();

  servedBy(store: { refresh(): void }): void {
    this.stores.add(store);
  }

  /** The tls-alpn-01 certificate to show the CA's validator for `name`, while one is wanted. */
  challengeFor(name: string): SecureContext | undefined {
    return this.issuer.challenges.certificateFor(name);
  }

  /** The same as PEM (key, then certificate), for the native TLS engine. */
  challengePemFor(name: string): Buffer | undefined {
    return this.issuer.challenges.pemFor(name);
  }

  /** Makes sure the cache holds a certificate for `name`, waiting ACME_WAIT at most (the name
   * policy's own checks included); `localIp` is the address its client connected to. */
  async obtain(name: string, localIp?: string): Promise<Outcome> {
    if (!(await this.policy.allows(name, localIp))) return "refused";
    const order = this.order(this.certificateName(name));
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
    return Date.now() >= this.schedule.timesOf(this.certificateName(name)).expiresAt;
  }

  /** The certificate of the cache that serves `name` (the client's): its own, or with
   * ACME_WILDCARD `*.parent` for a name that such an entry of ACME_NAMES allows (one order for
   * every name below parent, and none of them in the CA's certificate transparency logs),
   * unless the name is on the list itself or has a certificate of its own already. */
  certificateName(name: string): string {
    if (!this.config.wildcard || this.config.names.includes(name)) return name;
    const pattern = this.config.names.find((p) => p.startsWith("*.") && sniMatches(p, name));
    if (pattern === undefined || pattern === name) return name;
    return existsSync(osPath(join(this.config.cacheDir, name))) ? name : pattern;
  }

  /** Renews `name`'s cached certificate in the background when it is near its end (or when
   * the CA's renewal window says), if the name policy still allows it; resolves with how that
   * went (a handshake does not wait for it). */
  renewIfDue(name: string, localIp?: string): Promise<Renewal> {
    const now = Date.now();
    const subject = this.certificateName(name);
    const running = this.inflight.get(subject);
    if (running) return outcomeOf(running);
    const times = this.schedule.timesOf(subject);
    this.schedule.askCa(subject, localIp, name);
    if (now < (this.retryAt.get(subject) ?? 0) || now < times.renewAt)
      return Promise.resolve("not due");
    // Until it works, the old certificate serves; a failed renewal is tried again later.
    this.retryAt.set(subject, now + RETRY_MS);
    // The policy is asked of the client's name: a wildcard one is not a name of DNS's.
    return this.policy.allows(name, localIp).then((allowed) => {
      if (!allowed) return "refused";
      const other = this.inflight.get(subject);
      if (other) return outcomeOf(other);
      const expires = new Date(times.expiresAt).toISOString();
      this.log(`tlsd: info: acme: renewing ${subject} (expires ${expires})\n`);
      return outcomeOf(this.order(subject, times.certificateId));
    });
  }

  /** Renews each of `names` (certificates of the cache) that is due, RENEW_AT_ONCE at a time,
   * the CA's renewal window asked first where it has one: tls-keygen renew, for a cache whose
   * certificates no handshake may come to before their end. The outcomes are in `names`' order. */
  async renewDue(names: readonly string[]): Promise<Map<string, Renewal>> {
    const outcomes: Renewal[] = [];
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < names.length; i = next++) {
        const name = names[i] ?? "";
        await this.schedule.ask(name);
        outcomes[i] = await this.renewIfDue(name);
      }
    };
    await Promise.all(Array.from({ length: Math.min(RENEW_AT_ONCE, names.length) }, worker));
    return new Map(names.map((name, i) => [name, outcomes[i] ?? "failed"]));
  }

  /** When `name`'s certificate is due for renewal (ms since the epoch; Infinity: never, not
   * a certificate). */
  renewalTime(name: string): number {
    return this.schedule.timesOf(this.certificateName(name)).renewAt;
  }

  /** A new certificate for `name` is in the cache: its times are read again, and the stores
   * that serve the cache re-read it now. */
  private written(name: string): void {
    this.schedule.forget(name);
    this.retryAt.delete(name);
    for (const store of this.stores) store.refresh();
  }

  /** ACME_HOOK, after `name`'s new certificate is in place: with its files' paths, for a
   * daemon of the site's that serves it too (a reload); in the background, its end logged. */
  private async runHook(hook: string, name: string): Promise<void> {
    const dir = join(this.config.cacheDir, name);
    const end = await runSiteProgram(hook, name, this.config.searchPath, HOOK_TIMEOUT_MS, {
      env: {
        ACME_CERTFILE: toBytes(join(dir, CHAIN_FILE)),
        ACME_KEYFILE: toBytes(join(dir, KEY_FILE)),
      },
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
    // Stopped meanwhile (SIGTERM): the claim is let go, or every tlsd of the CERTDIR would
    // wait for it to go stale, and the challenge taken down, or its record would stay in the
    // zone.
    let abandoned = false;
    const unhook = onStop(async () => {
      abandoned = true;
      clearInterval(keepFresh);
      this.log(`tlsd: warning: acme: ${name}: order abandoned: stopped\n`);
      this.ledger.failed(name, "the tlsd that ordered it was stopped");
      this.ledger.release(name);
      await this.issuer.challenges.stop();
    });
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
          // Abandoned, it failed for that, which is said.
          if (!abandoned) this.log(`tlsd: warning: acme: ${name}: order failed: ${cause}\n`);
          this.ledger.failed(name, cause);
          throw error;
        },
      )
      .finally(() => {
        unhook();
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
    let saidGone = false;
    return new Promise((resolve, reject) => {
      const look = () => {
        if (mtimeOf(file) > before) {
          this.written(name);
          return resolve();
        }
        const state = this.ledger.orderState(name);
        // Its tlsd was killed outright, or crashed: the order is this one's now (or that of
        // another tlsd that saw it first, which is then waited for in turn).
        if (state === "gone") {
          if (!saidGone)
            this.log(`tlsd: warning: acme: ${name}: the tlsd that was ordering it is gone\n`);
          saidGone = true;
          let claim;
          try {
            claim = this.ledger.claim(name);
          } catch (error) {
            return reject(error instanceof Error ? error : new Error(String(error)));
          }
          if (claim === "claimed") return resolve(this.ownOrder(name));
          if (claim === "limited") return reject(new Error("rate limit"));
        }
        if (state === "none" || Date.now() - started > FOLLOW_MS) {
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
