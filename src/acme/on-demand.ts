// Certificates on demand: the first handshake for an allowed name that has no certificate yet
// waits (a bounded time) while one is ordered; every other connection goes on meanwhile, and
// connections for the same name share the one order. Certificates are renewed in the
// background when a handshake finds one near its end.
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { SecureContext } from "node:tls";
import { causeText } from "../ucspi/errors.ts";
import type { AcmeConfig } from "./config.ts";
import { Issuer } from "./issuer.ts";
import { Ledger, STALE_MS } from "./ledger.ts";
import { nameAllowed } from "./policy.ts";

export type Outcome =
  /** The certificate is in the cache now. */
  | "ready"
  /** The name is not on ACME_NAMES: no order. */
  | "refused"
  /** The order failed, or the rate limit refused it (logged). */
  | "failed"
  /** Still being ordered after ACME_WAIT; the order goes on. */
  | "timeout";

/** How often a tlsd waiting for another's order looks for its certificate. */
const OTHER_POLL_MS = 200;
/** After a failed renewal (or for a file that is not ours), the next look waits this long. */
const RETRY_MS = 60_000;

export class OnDemand {
  readonly config: AcmeConfig;
  private readonly issuer: Issuer;
  private readonly ledger: Ledger;
  private readonly log: (line: string) => void;
  private readonly inflight = new Map<string, Promise<void>>();
  /** When each cached certificate is due for renewal, once its file has been read. */
  private readonly renewAt = new Map<string, number>();

  /** log: complete lines for stderr (`tlsd: ...`), as a stage's ctx.log. */
  constructor(config: AcmeConfig, log: (line: string) => void) {
    this.config = config;
    this.issuer = new Issuer(config);
    this.ledger = new Ledger(dirname(config.accountKeyFile), config.ordersPerHour);
    this.log = log;
  }

  /** Stores that serve this cache: each re-reads it as soon as a certificate is written. */
  private readonly stores = new Set<{ refresh(): void }>();

  servedBy(store: { refresh(): void }): void {
    this.stores.add(store);
  }

  allowed(name: string): boolean {
    return nameAllowed(this.config.names, name);
  }

  /** The tls-alpn-01 certificate to show the CA's validator for `name`, while one is wanted. */
  challengeFor(name: string): SecureContext | undefined {
    return this.issuer.challengeFor(name);
  }

  /** Makes sure the cache holds a certificate for `name`, waiting ACME_WAIT at most. */
  async obtain(name: string): Promise<Outcome> {
    if (!this.allowed(name)) return "refused";
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

  /** Renews `name`'s cached certificate in the background when it is near its end. Its file
   * is read once per certificate (then only the time is compared, per handshake). */
  renewIfDue(name: string): void {
    const now = Date.now();
    if (!this.allowed(name) || this.inflight.has(name)) return;
    const due = this.renewAt.get(name);
    if (due !== undefined && now < due) return;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(readFileSync(join(this.config.cacheDir, name, "fullchain.pem")));
    } catch {
      this.renewAt.set(name, now + RETRY_MS); // not one of ours (a CERTFILE:name pair, say)
      return;
    }
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    const renewAt = to - (this.config.renewBeforeMs ?? (to - from) / 3);
    if (now < renewAt) {
      this.renewAt.set(name, renewAt);
      return;
    }
    // Until it works, the old certificate serves; a failed renewal is tried again later.
    this.renewAt.set(name, now + RETRY_MS);
    this.log(`tlsd: info: acme: renewing ${name} (expires ${cert.validTo})\n`);
    this.order(name).then(
      () => this.renewAt.delete(name),
      () => {
        // logged by order()
      },
    );
  }

  /** One order per name at a time (across every tlsd of this CERTDIR), within the rate
   * limit; logs how it went. */
  private order(name: string): Promise<void> {
    let running = this.inflight.get(name);
    if (running) return running;
    const claim = this.ledger.claim(name);
    if (claim === "limited") {
      this.log(
        `tlsd: warning: acme: ${name}: not ordered: ACME_RATE (${this.config.ordersPerHour} an hour) reached\n`,
      );
      return Promise.reject(new Error("rate limit"));
    }
    running = claim === "busy" ? this.otherOrder(name) : this.ownOrder(name);
    const forget = () => this.inflight.delete(name);
    running.then(forget, forget);
    this.inflight.set(name, running);
    return running;
  }

  private ownOrder(name: string): Promise<void> {
    const started = Date.now();
    this.log(`tlsd: info: acme: ordering a certificate for ${name}\n`);
    return this.issuer
      .issue(name)
      .then(
        () => {
          this.log(`tlsd: info: acme: ${name}: issued in ${Date.now() - started} ms\n`);
          for (const store of this.stores) store.refresh();
        },
        (error: unknown) => {
          this.log(`tlsd: warning: acme: ${name}: order failed: ${causeText(error)}\n`);
          throw error;
        },
      )
      .finally(() => this.ledger.release(name));
  }

  /** Another tlsd orders `name`: resolves once its certificate is written, rejects when that
   * order ends without one. */
  private otherOrder(name: string): Promise<void> {
    this.log(`tlsd: info: acme: ${name}: being ordered by another tlsd; waiting for it\n`);
    const file = join(this.config.cacheDir, name, "fullchain.pem");
    const before = mtimeOf(file);
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const look = () => {
        if (mtimeOf(file) > before) {
          for (const store of this.stores) store.refresh();
          return resolve();
        }
        if (!this.ledger.ordering(name) || Date.now() - started > STALE_MS)
          return reject(new Error("the other order ended without a certificate"));
        setTimeout(look, OTHER_POLL_MS).unref();
      };
      look();
    });
  }
}

function mtimeOf(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}
