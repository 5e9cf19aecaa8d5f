// Orders certificates from an ACME CA (RFC 8555) with acme-client, answering tls-alpn-01
// (RFC 8737) on tlsd's own port: the CA's validator connects with ALPN "acme-tls/1" and the
// name as SNI, and tlsd shows it the challenge certificate that `challenges` holds meanwhile;
// or http-01, answered on port 80 by acme-challenge from the file written here.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { createSecureContext } from "node:tls";
import { causeText } from "../ucspi/errors.ts";
import type { SecureContext } from "node:tls";
import { writeFileAtomic } from "../files/atomic-write.ts";
import { osPath } from "../ucspi/os-string.ts";
import { installCertificate } from "./cert-versions.ts";
import type * as AcmeClient from "acme-client";
import type { AcmeConfig } from "./config.ts";

type Acme = typeof AcmeClient;
type Client = InstanceType<Acme["Client"]>;

/** How acme-client retries a request that failed on the way (5 times by default, waiting 5,
 * 10, ... 25 s: over a minute that looks like a hang while a handshake waits): twice, after 1
 * and 2 s. A CA's Retry-After is still honoured, up to MAX_RETRY_AFTER_S. */
const RETRIES = 2;
const RETRY_DELAY_S = 1;
/** How long one request to the CA may take, from connecting to the answer's last byte. Without
 * a bound, a CA that took the connection and never answered (or answered a byte now and then)
 * held the order for good: its name (and, while the account was being set up, every name)
 * waited on it until tlsd ended. */
const CA_TIMEOUT_MS = 10_000;
/** The largest answer taken from the CA (a chain is a few KB): a bigger one was held in memory
 * whole, as fast as the CA could send it, for CA_TIMEOUT_MS. */
const CA_MAX_ANSWER = 1024 * 1024;

/** The longest wait a CA may ask for (Retry-After) that an order sits out; past it, the order
 * fails and the next client's orders anew (within ACME_RATE). */
const MAX_RETRY_AFTER_S = 10;

/** Retry-After in seconds: a number of seconds or an HTTP date; 0 for none or no sense. */
function retryAfterSeconds(value: unknown): number {
  if (typeof value !== "string") return 0;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const when = Date.parse(value);
  return Number.isNaN(when) ? 0 : Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

let bounded = false;

/** Each request to the CA gets CA_TIMEOUT_MS and CA_MAX_ANSWER. acme-client's handler of failed requests ends
 * one that got no answer at all (a timeout, or a network error once its retries are spent) in
 * a TypeError of its own ("Cannot read properties of undefined"); ours goes before it and says
 * why, in our words. */
function boundRequests(acme: Acme): void {
  if (bounded) return;
  bounded = true;
  acme.axios.interceptors.response.handlers?.unshift({
    fulfilled: (response) => response,
    rejected: (error: unknown) => {
      const failed = error as {
        response?: unknown;
        code?: string;
        config?: { retryAttempt?: number };
      };
      if (failed.response !== undefined) {
        // acme-client would wait as long as the CA asks, the name's order (and its lock) with
        // it: a day for `Retry-After: 86400`, and at once for a wait past setTimeout's range.
        const answer = failed.response as { status?: number; headers?: Record<string, unknown> };
        const wait = retryAfterSeconds(answer.headers?.["retry-after"]);
        if (wait > MAX_RETRY_AFTER_S)
          return Promise.reject(
            new Error(`the CA asks to wait ${wait} s before trying again (HTTP ${answer.status})`),
          );
        return Promise.reject(error);
      }
      // Our bound, not a cancel of anyone else's: acme-client would try again.
      if (failed.code === "ERR_CANCELED")
        return Promise.reject(new Error(`no answer from the CA in ${CA_TIMEOUT_MS / 1000} s`));
      if (failed.code === "ERR_BAD_RESPONSE" && /maxContentLength/.test(String(error)))
        return Promise.reject(new Error(`the CA's answer is over ${CA_MAX_ANSWER >> 20} MB`));
      if ((failed.config?.retryAttempt ?? 0) >= RETRIES)
        return Promise.reject(new Error(`the CA cannot be reached: ${causeText(error)}`));
      return Promise.reject(error);
    },
    synchronous: false,
    runWhen: null,
  });
  acme.axios.defaults.maxContentLength = CA_MAX_ANSWER;
  acme.axios.interceptors.request.use((config) => {
    config.signal = AbortSignal.timeout(CA_TIMEOUT_MS);
    return config;
  });
}

/**
 * What the CA says goes into file names (an http-01 token; the authorization's name, for
 * tls-alpn-01), which it once did as it was: a CA (or whoever answers for an http:// directory)
 * could write the key authorization over any file tlsd may write, and remove it. The
 * authorization must be for the name ordered, the token base64url (RFC 8555 §8.1).
 */
function checkChallenge(
  name: string,
  authz: { identifier: { value: string } },
  challenge: { type: string; token?: string },
): void {
  if (authz.identifier.value.toLowerCase() !== name)
    throw new Error(`the CA's authorization is not for ${name}`);
  if (challenge.type === "http-01" && !/^[A-Za-z0-9_-]+$/.test(challenge.token ?? ""))
    throw new Error("the CA sent a challenge token that is not base64url");
}

/** The certificate the CA issued is for `name` and goes with our key: one that does not (a
 * broken or hostile CA's) was installed over what served, and every handshake for the name
 * then failed on it until its own renewal time. */
function checkIssued(name: string, key: Buffer | string, chain: string): void {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain);
  } catch {
    throw new Error("the CA's certificate cannot be read");
  }
  if (!leaf.checkPrivateKey(createPrivateKey(key)))
    throw new Error("the CA's certificate does not go with the key ordered");
  if (leaf.checkHost(name, { wildcards: false }) === undefined)
    throw new Error(`the CA's certificate is not for ${name}`);
}

export class Issuer {
  private readonly config: AcmeConfig;
  /** Challenge certificates by name, while an order for that name is being validated. */
  private readonly challenges = new Map<string, SecureContext>();
  /** The same as PEM (its key, then its certificate), for the native TLS engine's context. */
  private readonly challengePems = new Map<string, Buffer>();
  private client: Promise<{ acme: Acme; client: Client }> | undefined;

  constructor(config: AcmeConfig) {
    this.config = config;
    this.challengeDir = join(config.cacheDir, ".acme", "tls-alpn-01");
  }

  private readonly challengeDir: string;

  /** The challenge certificate for `name`: this process's, or one another tlsd wrote. */
  challengeFor(name: string): SecureContext | undefined {
    const own = this.challenges.get(name);
    if (own) return own;
    const pem = this.challengePemFor(name);
    if (!pem) return undefined;
    try {
      return createSecureContext({ key: pem, cert: pem });
    } catch {
      return undefined; // being replaced: the validator tries again
    }
  }

  /** The challenge certificate for `name` as PEM, key then certificate: this process's, or
   * one another tlsd wrote. */
  challengePemFor(name: string): Buffer | undefined {
    const own = this.challengePems.get(name);
    if (own) return own;
    try {
      return readFileSync(osPath(join(this.challengeDir, `${name}.pem`)));
    } catch {
      return undefined;
    }
  }

  /** Orders a certificate for `name` and writes it to the cache (NAME/privkey.pem, 0600, and
   * NAME/fullchain.pem, switched as one: cert-versions.ts); resolves once both are in place. */
  async issue(name: string): Promise<void> {
    const { acme, client } = await this.ready();
    const [key, csr] = await acme.crypto.createCsr(
      { commonName: name, altNames: [name] },
      await acme.crypto.createPrivateEcdsaKey(),
    );
    const chain = await client.auto({
      csr,
      termsOfServiceAgreed: true,
      challengePriority: [this.config.challenge],
      // acme-client would check the challenge itself first, through the system's DNS to port
      // 443; the CA's own check is the one that counts.
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        checkChallenge(name, authz, challenge);
        if (challenge.type === "http-01") {
          // For acme-challenge on port 80 (a process of its own, maybe another user's).
          mkdirSync(osPath(this.config.httpDir), { recursive: true, mode: 0o755 });
          writeFileAtomic(join(this.config.httpDir, challenge.token), keyAuthorization, {
            mode: 0o644,
            overwrite: true,
          });
          return;
        }
        const [k, c] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
        this.challenges.set(name, createSecureContext({ key: k, cert: c }));
        this.challengePems.set(name, Buffer.concat([k, c]));
        // On disk too, for a tlsd in another process (one per connection under djb's
        // tcpserver), which the validator's connection may well reach instead of this one.
        mkdirSync(osPath(this.challengeDir), { recursive: true, mode: 0o700 });
        writeFileAtomic(join(this.challengeDir, `${name}.pem`), Buffer.concat([k, c]), {
          mode: 0o600,
          overwrite: true,
        });
      },
      challengeRemoveFn: async (authz, challenge) => {
        checkChallenge(name, authz, challenge);
        if (challenge.type === "http-01") {
          rmSync(osPath(join(this.config.httpDir, challenge.token)), { force: true });
          return;
        }
        this.challenges.delete(name);
        this.challengePems.delete(name);
        rmSync(osPath(join(this.challengeDir, `${name}.pem`)), { force: true });
      },
    });
    checkIssued(name, key, chain);
    installCertificate(this.config.cacheDir, name, key, chain);
  }

  /** The client with its account, made once (two first orders at once would both register an
   * account, and the CA refuses the second). */
  private ready(): Promise<{ acme: Acme; client: Client }> {
    this.client ??= (async () => {
      // Loaded with the first order: a tlsd that never orders does not pay for them.
      const [acme, { Agent }] = await Promise.all([import("acme-client"), import("node:https")]);
      if (this.config.caFile)
        acme.axios.defaults.httpsAgent = new Agent({
          ca: readFileSync(osPath(this.config.caFile)),
        });
      boundRequests(acme);
      const settings = (
        acme.axios.defaults as {
          acmeSettings?: { retryMaxAttempts: number; retryDefaultDelay: number };
        }
      ).acmeSettings;
      if (settings) {
        settings.retryMaxAttempts = RETRIES;
        settings.retryDefaultDelay = RETRY_DELAY_S;
      }
      const client = new acme.Client({
        directoryUrl: this.config.directoryUrl,
        accountKey: await this.accountKey(acme),
        backoffMin: 250,
        backoffMax: 5000,
      });
      await client.createAccount({
        termsOfServiceAgreed: true,
        ...(this.config.email ? { contact: [`mailto:${this.config.email}`] } : {}),
      });
      return { acme, client };
    })();
    // A failure (the CA down, say) is not remembered: the next order tries again.
    this.client.catch(() => (this.client = undefined));
    return this.client;
  }

  /** The account key from the cache, made (0600, atomically) the first time. */
  private async accountKey(acme: Acme): Promise<Buffer> {
    const file = this.config.accountKeyFile;
    try {
      return readFileSync(osPath(file));
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT") throw error;
    }
    mkdirSync(osPath(dirname(file)), { recursive: true, mode: 0o700 });
    const key = await acme.crypto.createPrivateEcdsaKey();
    try {
      writeFileAtomic(file, key, { mode: 0o600 });
    } catch (error) {
      // Another tlsd made one meanwhile: use theirs.
      if ((error as { code?: string }).code === "EEXIST") return readFileSync(osPath(file));
      throw error;
    }
    return key;
  }
}
