// When each certificate of the cache is due for renewal: a third of its lifetime before its
// end (or ACME_RENEW_BEFORE), or a moment the CA's renewal window suggests (ARI, RFC 9773),
// asked for in the background and kept on disk for every tlsd of the CERTDIR
// (renewal-records.ts).
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { CHAIN_FILE } from "../tls/cert-dir.ts";
import { causeText } from "../ucspi/errors.ts";
import { osPath } from "../ucspi/os-string.ts";
import type { AcmeConfig } from "./config.ts";
import type { Issuer } from "./issuer.ts";
import { renewalMoment } from "./renewal-info.ts";
import { RenewalRecords } from "./renewal-records.ts";
import type { RenewalRecord } from "./renewal-records.ts";

/** After a failed question for a renewal window, the next waits this long; a CA without ARI
 * (or that does not know the certificate) is asked again after NO_ARI_MS. */
const ASK_AGAIN_MS = 3_600_000;
const NO_ARI_MS = 24 * 3_600_000;

export interface Times {
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

export class RenewalSchedule {
  private readonly config: AcmeConfig;
  private readonly issuer: Issuer;
  private readonly log: (line: string) => void;
  /** Called when the CA's answer makes a renewal due now. */
  private readonly due: (name: string, localIp?: string) => void;
  /** Each cached certificate's times, once its file has been read. */
  private readonly times = new Map<string, Times>();
  /** What the CA said of renewing each certificate, shared by every tlsd of the cache. */
  private readonly renewals: RenewalRecords;
  /** Names whose renewal information is being asked for. */
  private readonly asking = new Set<string>();

  constructor(
    config: AcmeConfig,
    issuer: Issuer,
    log: (line: string) => void,
    due: (name: string, localIp?: string) => void,
  ) {
    this.config = config;
    this.issuer = issuer;
    this.log = log;
    this.due = due;
    this.renewals = new RenewalRecords(join(dirname(config.accountKeyFile), "renewal"));
  }

  /** A new certificate for `name` is in the cache: its times are read again. */
  forget(name: string): void {
    this.times.delete(name);
  }

  /** Asks the CA when `name`'s certificate should be renewed (ARI, RFC 9773), in the
   * background, when the last answer (this tlsd's or another's) says it is time to ask again;
   * renews if the answer makes it due (for `forName`, the client's name that a wildcard
   * certificate serves). Without an answer the certificate's own dates decide. */
  askCa(name: string, localIp?: string, forName = name): void {
    void this.ask(name).then((due) => {
      if (due) this.due(forName, localIp);
    });
  }

  /** The same question, resolved once it is answered (or not asked: not time yet, or asked
   * already): whether the answer made the certificate due. */
  async ask(name: string): Promise<boolean> {
    const times = this.timesOf(name);
    const now = Date.now();
    if (times.serial === undefined || now < times.askAt || this.asking.has(name)) return false;
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
    const kept = this.renewals.read(name, serial);
    if (kept && now < kept.askAt) {
      Object.assign(times, this.withRecord(times, kept));
      return false;
    }
    this.asking.add(name);
    keep({ ...(kept ?? { serial }), askAt: now + ASK_AGAIN_MS });
    return (async () => {
      const pem = readFileSync(osPath(join(this.config.cacheDir, name, CHAIN_FILE)), "latin1");
      return this.issuer.renewalInfo(pem);
    })()
      .then(
        (info) => {
          if (!info) {
            keep({ serial, askAt: Date.now() + NO_ARI_MS });
            return false;
          }
          const { window } = info;
          // The window this tlsd (or another) was given before: its moment stays.
          const same = kept?.start === window.start && kept.end === window.end;
          const moment =
            same && kept.moment !== undefined ? kept.moment : renewalMoment(window, Math.random());
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
          return current() && Date.now() >= times.renewAt;
        },
        (error: unknown) => {
          this.log(
            `tlsd: warning: acme: ${name}: no renewal window from the CA: ${causeText(error)}\n`,
          );
          // A window the CA gave before still holds.
          keep({ ...(kept ?? { serial }), askAt: Date.now() + ASK_AGAIN_MS });
          return false;
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
  timesOf(name: string): Times {
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
      const record = this.renewals.read(name, cert.serialNumber);
      if (record) times = this.withRecord(times, record);
    } catch {
      times = { renewAt: Infinity, ownRenewAt: Infinity, expiresAt: Infinity, askAt: Infinity };
    }
    this.times.set(name, times);
    return times;
  }
}
