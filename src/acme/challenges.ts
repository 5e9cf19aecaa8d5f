// The answers to the CA's challenges (ACME_CHALLENGE), set up before the CA validates a name
// and taken down after:
// - tls-alpn-01 (RFC 8737): a challenge certificate that tlsd shows the validator on its own
//   port, held here and written to CERTDIR/.acme/tls-alpn-01/ for the other tlsds there;
// - http-01: the key authorization written to CERTDIR/.acme-http-01/TOKEN, which
//   acme-challenge serves on port 80;
// - dns-01: the TXT record _acme-challenge.NAME, which ACME_DNS_HOOK publishes and removes
//   (lego's exec provider's arguments, so that a script written for it serves as it is).
import { Resolver } from "node:dns/promises";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createSecureContext } from "node:tls";
import type { SecureContext } from "node:tls";
import type * as AcmeClient from "acme-client";
import { writeFileAtomic } from "../files/atomic-write.ts";
import { canonicalAddress } from "../net/ip.ts";
import { osPath } from "../ucspi/os-string.ts";
import type { AcmeConfig } from "./config.ts";
import { endText, runSiteProgram } from "./site-program.ts";
import { zoneServers } from "./zone-servers.ts";

type Crypto = (typeof AcmeClient)["crypto"];

/** One challenge of an order for `name`, as acme-client hands it over; keyAuthorization is
 * acme-client's, which for dns-01 is the TXT record's value already. */
export interface Challenge {
  name: string;
  authz: Parameters<Crypto["createAlpnCertificate"]>[0];
  challenge: { type: string; token?: string };
  keyAuthorization: string;
}

/** How long ACME_DNS_HOOK may take to publish a record (a DNS provider's API, and its wait
 * for the record to reach every server of the zone), or to remove it, before it is killed. */
export const DNS_HOOK_TIMEOUT_MS = 180_000;

/** An http-01 token as RFC 8555 section 8.1 has it (base64url): safe as a file name. */
const TOKEN = /^[A-Za-z0-9_-]+$/;

/** What a record of a challenge set up and not taken down holds, trimmed; undefined: none. */
function leftBehind(file: string): string | undefined {
  try {
    return readFileSync(osPath(file), "latin1").trim();
  } catch {
    return undefined;
  }
}

/**
 * What the CA says goes into file names and a program's arguments (an http-01 token; the
 * authorization's name), which it once did as it was: a CA (or whoever answers for an http://
 * directory) could write the key authorization over any file tlsd may write, and remove it.
 * The authorization must be for the name ordered, the token base64url (RFC 8555 §8.1), and the
 * challenge of the kind ACME_CHALLENGE names.
 */
function checkChallenge(wanted: string, { name, authz, challenge }: Challenge): void {
  // acme-client takes another kind when the CA offers none of ours: ours would not answer it.
  if (challenge.type !== wanted)
    throw new Error(`the CA offers no ${wanted} challenge for ${name}`);
  // A wildcard's authorization is for the name below the `*.` (RFC 8555 section 7.1.4); an
  // address's may be spelt otherwise (IPv6).
  const value = authz.identifier.value;
  if ((canonicalAddress(value) ?? value.toLowerCase()) !== name.replace(/^\*\./, ""))
    throw new Error(`the CA's authorization is not for ${name}`);
  if (challenge.type === "http-01" && !TOKEN.test(challenge.token ?? ""))
    throw new Error("the CA sent a challenge token that is not base64url");
}

/** dns-01's record for `name`, with the root's dot (lego's form): a wildcard's is its base's. */
function recordName(name: string): string {
  return `_acme-challenge.${name.replace(/^\*\./, "")}.`;
}

/** One challenge among those of every order under way: its kind and key authorization are
 * the CA's for that name and no other. */
function challengeKey({ name, challenge, keyAuthorization }: Challenge): string {
  return `${name}\0${challenge.type}\0${keyAuthorization}`;
}

/** A challenge of Challenges.presented: its set-up (it may still run), and its taking down
 * once asked for. */
interface Presented {
  asked: Challenge;
  setUp: Promise<void>;
  takenDown?: Promise<void>;
}

export class Challenges {
  private readonly config: AcmeConfig;
  private readonly log: (line: string) => void;
  /** Challenge certificates by name, while an order for that name is being validated. */
  private readonly certificates = new Map<string, SecureContext>();
  /** The same as PEM (its key, then its certificate), for the native TLS engine's context. */
  private readonly pems = new Map<string, Buffer>();
  private readonly alpnDir: string;
  /** CERTDIR/.acme/dns-01/NAME: the value of a dns-01 record published for NAME and not yet
   * removed, for the next order of NAME to remove if its tlsd was killed outright. */
  private readonly dnsDir: string;
  /** CERTDIR/.acme/http-01/NAME: the token of an http-01 answer written for NAME and not yet
   * removed, for the same (acme-challenge would serve it for ever, and the folder grow). */
  private readonly httpRecords: string;
  /** Every challenge being set up, set up, or being taken down, by challengeKey: what stop()
   * takes down. One that failed its checks is never in it, so remove() leaves alone what such
   * a challenge names. */
  private readonly presented = new Map<string, Presented>();
  /** Aborted by stop(): a hook still publishing a record is ended, and no other starts. */
  private readonly stopping = new AbortController();

  constructor(config: AcmeConfig, log: (line: string) => void) {
    this.config = config;
    this.log = log;
    this.alpnDir = join(config.cacheDir, ".acme", "tls-alpn-01");
    this.dnsDir = join(config.cacheDir, ".acme", "dns-01");
    this.httpRecords = join(config.cacheDir, ".acme", "http-01");
  }

  /** The tls-alpn-01 certificate for `name`: this process's, or one another tlsd wrote. */
  certificateFor(name: string): SecureContext | undefined {
    const own = this.certificates.get(name);
    if (own) return own;
    const pem = this.pemFor(name);
    if (!pem) return undefined;
    try {
      return createSecureContext({ key: pem, cert: pem });
    } catch {
      return undefined; // being replaced: the validator tries again
    }
  }

  /** The same as PEM, key then certificate. */
  pemFor(name: string): Buffer | undefined {
    const own = this.pems.get(name);
    if (own) return own;
    try {
      return readFileSync(osPath(join(this.alpnDir, `${name}.pem`)));
    } catch {
      return undefined;
    }
  }

  /** Sets up the answer to the challenge; resolves once the CA may validate. */
  async present(crypto: Crypto, asked: Challenge): Promise<void> {
    checkChallenge(this.config.challenge, asked);
    if (this.stopping.signal.aborted) throw new Error("stopped");
    // Kept from its start: what stop() finds half set up is taken down too, once its set-up
    // has ended.
    const setUp = this.setUp(crypto, asked);
    this.presented.set(challengeKey(asked), { asked, setUp });
    await setUp;
  }

  /** Takes the answer down, validated or not. A record ACME_DNS_HOOK could not remove is
   * said (it would stay in the zone); the order's own outcome stands. */
  remove(asked: Challenge): Promise<void> {
    const key = challengeKey(asked);
    const entry = this.presented.get(key);
    // Not set up: it failed its checks.
    if (!entry) return Promise.resolve();
    // Once, whether its order or stop() asks first; the other waits for the same.
    entry.takenDown ??= this.takeDown(asked).finally(() => this.presented.delete(key));
    return entry.takenDown;
  }

  /** Before an order of `name` (its claim held, so no other tlsd has one under way): what an
   * order of a tlsd killed outright set up for it, and never took down, is taken down now,
   * once: a dns-01 record (a warning if the hook fails: it would stay in the zone), an http-01
   * answer in CERTDIR/.acme-http-01, a tls-alpn-01 certificate. */
  async sweep(name: string): Promise<void> {
    await this.sweepDns(name);
    this.sweepHttp(name);
    this.sweepAlpn(name);
  }

  private async sweepDns(name: string): Promise<void> {
    const record = join(this.dnsDir, name);
    const value = leftBehind(record);
    if (value === undefined) return;
    if (this.config.dnsHook !== undefined && value !== "") {
      const why = await this.runDnsHook("cleanup", name, value);
      this.log(
        why === undefined
          ? `tlsd: info: acme: ${name}: removed the record an order killed before its end left\n`
          : `tlsd: warning: acme: ${name}: ACME_DNS_HOOK did not remove the record an order killed before its end left: ${why}\n`,
      );
    }
    rmSync(osPath(record), { force: true });
  }

  private sweepHttp(name: string): void {
    const record = join(this.httpRecords, name);
    const token = leftBehind(record);
    if (token === undefined) return;
    // Our own file, but a name in a path all the same: a token as the CA may send one.
    if (TOKEN.test(token)) {
      rmSync(osPath(join(this.config.httpDir, token)), { force: true });
      this.log(
        `tlsd: info: acme: ${name}: removed the http-01 answer an order killed before its end left\n`,
      );
    }
    rmSync(osPath(record), { force: true });
  }

  private sweepAlpn(name: string): void {
    const file = osPath(join(this.alpnDir, `${name}.pem`));
    if (!existsSync(file)) return;
    rmSync(file, { force: true });
    this.log(
      `tlsd: info: acme: ${name}: removed the tls-alpn-01 certificate an order killed before its end left\n`,
    );
  }

  /** The process is stopping (SIGTERM) with orders still running: a hook still publishing is
   * ended, and every challenge set up is taken down now, as its order would have after the
   * CA's answer; resolves when all are. Those orders fail. */
  async stop(): Promise<void> {
    this.stopping.abort();
    const entries = [...this.presented.values()];
    await Promise.all(
      entries.map(async ({ asked, setUp }) => {
        await setUp.catch(() => undefined);
        await this.remove(asked);
      }),
    );
  }

  private async setUp(crypto: Crypto, asked: Challenge): Promise<void> {
    const { name, authz, challenge, keyAuthorization } = asked;
    if (challenge.type === "dns-01") {
      // Written first: a tlsd killed while its hook publishes leaves what to remove.
      mkdirSync(osPath(this.dnsDir), { recursive: true, mode: 0o700 });
      writeFileAtomic(join(this.dnsDir, name), `${keyAuthorization}\n`, {
        mode: 0o600,
        overwrite: true,
      });
      const why = await this.runDnsHook("present", name, keyAuthorization, this.stopping.signal);
      if (why !== undefined) throw new Error(`ACME_DNS_HOOK did not publish the record: ${why}`);
      if (this.config.dnsWaitMs > 0) await this.seen(recordName(name), keyAuthorization);
      return;
    }
    if (challenge.type === "http-01") {
      // Written first, as dns-01's: a tlsd killed before its order's end leaves what to remove.
      mkdirSync(osPath(this.httpRecords), { recursive: true, mode: 0o700 });
      writeFileAtomic(join(this.httpRecords, name), `${challenge.token ?? ""}\n`, {
        mode: 0o600,
        overwrite: true,
      });
      // For acme-challenge on port 80 (a process of its own, maybe another user's).
      mkdirSync(osPath(this.config.httpDir), { recursive: true, mode: 0o755 });
      writeFileAtomic(join(this.config.httpDir, challenge.token ?? ""), keyAuthorization, {
        mode: 0o644,
        overwrite: true,
      });
      return;
    }
    const [k, c] = await crypto.createAlpnCertificate(authz, keyAuthorization);
    this.certificates.set(name, createSecureContext({ key: k, cert: c }));
    this.pems.set(name, Buffer.concat([k, c]));
    // On disk too, for a tlsd in another process (one per connection under djb's tcpserver),
    // which the validator's connection may well reach instead of this one.
    mkdirSync(osPath(this.alpnDir), { recursive: true, mode: 0o700 });
    writeFileAtomic(join(this.alpnDir, `${name}.pem`), Buffer.concat([k, c]), {
      mode: 0o600,
      overwrite: true,
    });
  }

  private async takeDown({ name, challenge, keyAuthorization }: Challenge): Promise<void> {
    if (challenge.type === "dns-01") {
      const why = await this.runDnsHook("cleanup", name, keyAuthorization);
      if (why !== undefined)
        this.log(`tlsd: warning: acme: ${name}: ACME_DNS_HOOK did not remove the record: ${why}\n`);
      rmSync(osPath(join(this.dnsDir, name)), { force: true });
      return;
    }
    if (challenge.type === "http-01") {
      rmSync(osPath(join(this.config.httpDir, challenge.token ?? "")), { force: true });
      rmSync(osPath(join(this.httpRecords, name)), { force: true });
      return;
    }
    this.certificates.delete(name);
    this.pems.delete(name);
    rmSync(osPath(join(this.alpnDir, `${name}.pem`)), { force: true });
  }

  /** ACME_DNS_WAIT: resolves once the TXT record `record` holds `value` at every server of
   * its zone (zone-servers.ts), or where those cannot be found at every server of
   * ACME_RESOLVER (else at the system's resolver), each asked every second until it has it;
   * the CA asked before that fails the order and counts against its limits. */
  private async seen(record: string, value: string): Promise<void> {
    const { resolvers } = this.config;
    const zone = await zoneServers(record, resolvers);
    const servers = zone?.servers ?? (resolvers.length > 0 ? resolvers : [undefined]);
    // Where a CNAME sends the record, its zone's servers have it under that name.
    const at = zone?.name ?? record.slice(0, -1);
    let lacking = servers.map((server) => {
      const resolver = new Resolver({ timeout: 2_000, tries: 1 });
      if (server !== undefined) resolver.setServers([server]);
      return { server: server ?? "the system's resolver", resolver };
    });
    const deadline = Date.now() + this.config.dnsWaitMs;
    for (;;) {
      const has = await Promise.all(
        lacking.map(async ({ resolver }) => {
          const found = await resolver.resolveTxt(at).catch(() => []);
          return found.some((chunks) => chunks.join("") === value);
        }),
      );
      lacking = lacking.filter((_, i) => !has[i]);
      if (lacking.length === 0) return;
      if (Date.now() >= deadline)
        throw new Error(
          `ACME_DNS_WAIT: ${lacking.map((l) => l.server).join(", ")} did not have the record ${record} in ${this.config.dnsWaitMs / 1000} s`,
        );
      await sleep(1_000);
    }
  }

  /** ACME_DNS_HOOK present|cleanup _acme-challenge.NAME. VALUE: undefined when it exited 0,
   * else how it ended. */
  private async runDnsHook(
    action: "present" | "cleanup",
    name: string,
    value: string,
    stop?: AbortSignal,
  ): Promise<string | undefined> {
    const hook = this.config.dnsHook;
    if (hook === undefined) return "ACME_DNS_HOOK is not set";
    const end = await runSiteProgram(hook, name, this.config.searchPath, DNS_HOOK_TIMEOUT_MS, {
      args: [action, recordName(name), value],
      ...(stop ? { stop } : {}),
    });
    return end.ran && end.code === 0 ? undefined : endText(end);
  }
}
