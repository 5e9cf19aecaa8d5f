// Orders certificates from an ACME CA (RFC 8555) with acme-client, the challenges answered as
// challenges.ts says (tls-alpn-01 on tlsd's own port, http-01 on port 80 by acme-challenge,
// dns-01 by the site's ACME_DNS_HOOK), and asks the CA when to renew them (ARI).
import { isIP } from "node:net";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { causeText } from "../ucspi/errors.ts";
import { writeFileAtomic } from "../files/atomic-write.ts";
import { osPath } from "../ucspi/os-string.ts";
import { installCertificate } from "./cert-versions.ts";
import { Challenges } from "./challenges.ts";
import type * as AcmeClient from "acme-client";
import type { AcmeConfig, AcmeKeyType } from "./config.ts";
import { certificateId, nextAsk, parseRenewalInfo, retryAfterSeconds } from "./renewal-info.ts";
import type { RenewalWindow } from "./renewal-info.ts";

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
        config?: { retryAttempt?: number; retryValidateStatus?: (status?: number) => boolean };
      };
      if (failed.response !== undefined) {
        // acme-client would wait as long as the CA asks, the name's order (and its lock) with
        // it: a day for `Retry-After: 86400`, and at once for a wait past setTimeout's range.
        // (Every answer comes this way, acme-client's validation after ours: one it takes, such
        // as ARI's with its Retry-After for the next question, is not a wait.)
        const answer = failed.response as { status?: number; headers?: Record<string, unknown> };
        if (failed.config?.retryValidateStatus?.(answer.status)) return Promise.reject(error);
        const wait = retryAfterSeconds(answer.headers?.["retry-after"], Date.now()) ?? 0;
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
  const issuedFor = isIP(name)
    ? leaf.checkIP(name) !== undefined
    : name.startsWith("*.")
      ? (leaf.subjectAltName ?? "").split(", ").includes(`DNS:${name}`)
      : leaf.checkHost(name, { wildcards: false }) !== undefined;
  if (!issuedFor) throw new Error(`the CA's certificate is not for ${name}`);
}

/** A new key of ACME_KEY_TYPE's kind, PEM. */
function certificateKey(acme: Acme, type: AcmeKeyType): Promise<Buffer> {
  if (type === "p384") return acme.crypto.createPrivateEcdsaKey("P-384");
  if (type.startsWith("rsa")) return acme.crypto.createPrivateRsaKey(Number(type.slice(3)));
  return acme.crypto.createPrivateEcdsaKey("P-256");
}

/** How long the CA's directory read for renewalInfo and profiles is kept. */
const DIRECTORY_MS = 3_600_000;

interface Directory {
  renewalInfo?: unknown;
  meta?: { profiles?: unknown };
}

export interface RenewalInfo {
  certificateId: string;
  window: RenewalWindow;
  /** When to ask again (the CA's Retry-After, bounded). */
  askAgainAt: number;
}

/** The client, its new orders carrying `fields` too (ACME profiles, ARI's replaces) and an
 * address named as one (RFC 8738), for its auto(), which makes the order itself from the CSR's
 * names alone, each as a DNS name. A CA that refuses the order with `replaces` (the
 * certificate was replaced already: RFC 9773's alreadyReplaced) is asked once more without it. */
function withOrderFields(client: Client, fields: Record<string, string>): Client {
  const { replaces, ...rest } = fields;
  const shaped = (data: { identifiers?: { type: string; value: string }[] }) => ({
    ...data,
    ...(data.identifiers && {
      identifiers: data.identifiers.map((id) => (isIP(id.value) ? { ...id, type: "ip" } : id)),
    }),
    ...rest,
  });
  const order = (data: object) => client.createOrder(shaped(data) as never);
  return Object.create(client, {
    createOrder: {
      value: (data: object) =>
        replaces === undefined
          ? order(data)
          : client.createOrder({ ...shaped(data), replaces } as never).catch(() => order(data)),
    },
  }) as Client;
}

/** The part of acme-client's API a revocation signed with the certificate's key needs: its
 * client signs with the account's URL, which such a request has none of. */
interface RevocationApi {
  apiResourceRequest(
    resource: "revokeCert",
    payload: { certificate: string; reason: number },
    validStatusCodes: number[],
    options: { includeJwsKid: boolean },
  ): Promise<unknown>;
}

export class Issuer {
  private readonly config: AcmeConfig;
  /** The answers to the CA's challenges while its orders are validated. */
  readonly challenges: Challenges;
  private client: Promise<{ acme: Acme; client: Client }> | undefined;
  private acme: Promise<Acme> | undefined;
  private directoryRead: { at: number; directory: Directory } | undefined;

  /** log: complete lines for stderr, as OnDemand's. */
  constructor(config: AcmeConfig, log: (line: string) => void) {
    this.config = config;
    this.challenges = new Challenges(config, log);
  }

  /** Orders a certificate for `name` and writes it to the cache (NAME/privkey.pem, 0600, and
   * NAME/fullchain.pem, switched as one: cert-versions.ts); resolves once both are in place.
   * replaces: the ARI identifier of the certificate it renews. */
  async issue(name: string, replaces?: string): Promise<void> {
    await this.challenges.sweep(name);
    const ready = this.ready();
    try {
      await this.order(await ready, name, replaces);
    } catch (error) {
      // The account may be what failed (a private CA reset forgets its accounts): the next
      // order looks it up again, and registers it where the CA no longer knows it.
      if (this.client === ready) this.client = undefined;
      throw error;
    }
  }

  private async order(
    { acme, client }: { acme: Acme; client: Client },
    name: string,
    replaces: string | undefined,
  ): Promise<void> {
    if (this.config.profile) await this.checkProfile(this.config.profile);
    // An address goes in the subject alternative names only (as a CA issues it).
    const [key, csr] = await acme.crypto.createCsr(
      isIP(name) ? { altNames: [name] } : { commonName: name, altNames: [name] },
      await certificateKey(acme, this.config.keyType),
    );
    const chain = await withOrderFields(client, {
      ...(this.config.profile ? { profile: this.config.profile } : {}),
      ...(replaces ? { replaces } : {}),
    }).auto({
      csr,
      termsOfServiceAgreed: true,
      challengePriority: [this.config.challenge],
      // acme-client would check the challenge itself first, through the system's DNS to port
      // 443; the CA's own check is the one that counts.
      skipChallengeVerification: true,
      challengeCreateFn: (authz, challenge, keyAuthorization) =>
        this.challenges.present(acme.crypto, { name, authz, challenge, keyAuthorization }),
      challengeRemoveFn: (authz, challenge, keyAuthorization) =>
        this.challenges.remove({ name, authz, challenge, keyAuthorization }),
    });
    checkIssued(name, key, chain);
    installCertificate(this.config.cacheDir, name, key, chain);
  }

  /** Revokes the certificate `chain` starts with (RFC 8555 section 7.6), for RFC 5280's
   * `reason`; with `certificateKey` the request is signed by that key, the certificate's own
   * (for keyCompromise: only that proves it, and Let's Encrypt then blocks the key), else by
   * the account that ordered it. */
  async revoke(chain: string, reason: number, certificateKey?: Buffer): Promise<void> {
    const certificate = new X509Certificate(chain).raw.toString("base64url");
    if (!certificateKey) {
      const { client } = await this.ready();
      await client.revokeCertificate(chain, { reason });
      return;
    }
    const acme = await this.module();
    const byKey = new acme.Client({
      directoryUrl: this.config.directoryUrl,
      accountKey: certificateKey,
    }) as unknown as { api: RevocationApi };
    await byKey.api.apiResourceRequest("revokeCert", { certificate, reason }, [200], {
      includeJwsKid: false,
    });
  }

  /** The client with its account, made once (two first orders at once would both register an
   * account, and the CA refuses the second). */
  private ready(): Promise<{ acme: Acme; client: Client }> {
    this.client ??= (async () => {
      const acme = await this.module();
      const { key, made } = await this.accountKey(acme);
      const client = new acme.Client({
        directoryUrl: this.config.directoryUrl,
        accountKey: key,
        backoffMin: 250,
        backoffMax: 5000,
        // Sent only when the account is registered, not when it is looked up.
        ...(this.config.eab
          ? { externalAccountBinding: this.accountBinding(this.config.eab) }
          : {}),
      });
      const contact = this.config.email ? { contact: [`mailto:${this.config.email}`] } : {};
      const register = () => client.createAccount({ termsOfServiceAgreed: true, ...contact });
      if (made) await register();
      else {
        // The key's account, looked up (a restarted tlsd, another of the CERTDIR): acme-client
        // would send the CA an update of nothing but termsOfServiceAgreed, which a CA may
        // refuse ("use POST-as-GET"), and every order of that tlsd failed. A CA that does not
        // know the key (another ACME_DIRECTORY) gets the account made.
        await client.createAccount({ onlyReturnExisting: true }).catch(register);
        if (this.config.email) await client.updateAccount(contact);
      }
      return { acme, client };
    })();
    // A failure (the CA down, say) is not remembered: the next order tries again.
    this.client.catch(() => (this.client = undefined));
    return this.client;
  }

  /** acme-client, its requests bounded and trusting ACME_CAFILE: loaded with the first order
   * or question to the CA, so that a tlsd that never asks does not pay for it. */
  private module(): Promise<Acme> {
    this.acme ??= (async () => {
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
      return acme;
    })();
    return this.acme;
  }

  /** The CA's directory, read again after DIRECTORY_MS (acme-client keeps its own copy for
   * the orders). */
  private async directory(): Promise<Directory> {
    const now = Date.now();
    if (this.directoryRead && now - this.directoryRead.at < DIRECTORY_MS)
      return this.directoryRead.directory;
    const acme = await this.module();
    const answer = await acme.axios.get<unknown>(this.config.directoryUrl, {
      responseType: "json",
      validateStatus: () => true,
    });
    if (answer.status !== 200) throw new Error(`the CA's directory answered HTTP ${answer.status}`);
    if (typeof answer.data !== "object" || answer.data === null)
      throw new Error("the CA's directory is not JSON");
    const directory = answer.data as Directory;
    this.directoryRead = { at: now, directory };
    return directory;
  }

  /** What the CA says of renewing the certificate `chainPem` starts with (RFC 9773):
   * undefined when its directory has no renewalInfo, or it does not know the certificate. */
  async renewalInfo(chainPem: string): Promise<RenewalInfo | undefined> {
    const base = (await this.directory()).renewalInfo;
    if (typeof base !== "string" || !/^https?:\/\//.test(base)) return undefined;
    const { authorityKeyId, parseCertificate } = await import("../x509/certificates.ts");
    const leaf = parseCertificate(chainPem);
    const aki = leaf && authorityKeyId(leaf);
    if (!leaf || !aki) throw new Error("the certificate names no authority key identifier");
    const id = certificateId(aki, leaf.serialNumber);
    const acme = await this.module();
    const answer = await acme.axios.get<ArrayBuffer>(`${base.replace(/\/$/, "")}/${id}`, {
      responseType: "arraybuffer",
      validateStatus: () => true,
    });
    // Not one of its certificates (a hand-placed one of another CA's, say): nothing to ask.
    if (answer.status === 404) return undefined;
    if (answer.status !== 200)
      throw new Error(`the CA answered its renewalInfo with HTTP ${answer.status}`);
    const now = Date.now();
    return {
      certificateId: id,
      window: parseRenewalInfo(new Uint8Array(answer.data)),
      askAgainAt: nextAsk(answer.headers["retry-after"], now),
    };
  }

  /** ACME_PROFILE is one the CA offers (its directory's meta.profiles), or the order fails:
   * a CA that knows none would issue its default without a word. */
  private async checkProfile(profile: string): Promise<void> {
    const offered = (await this.directory()).meta?.profiles;
    const names = typeof offered === "object" && offered !== null ? Object.keys(offered) : [];
    if (names.includes(profile)) return;
    throw new Error(
      names.length === 0
        ? `ACME_PROFILE ${profile}: the CA offers no profiles`
        : `ACME_PROFILE ${profile}: the CA offers ${names.join(", ")}`,
    );
  }

  /** The external account binding, its MAC key read from its file (base64url, as CAs give
   * it; surrounding white space ignored). Neither the key nor a byte of the file is ever in a
   * message. */
  private accountBinding(eab: { kid: string; keyFile: string }): { kid: string; hmacKey: string } {
    let text: string;
    try {
      text = readFileSync(osPath(eab.keyFile), "latin1").trim();
    } catch (error) {
      throw new Error(`unable to read ACME_EAB_KEYFILE ${eab.keyFile}: ${causeText(error)}`);
    }
    if (!/^[A-Za-z0-9_-]{16,}={0,2}$/.test(text) && !/^[A-Za-z0-9+/]{16,}={0,2}$/.test(text))
      throw new Error(`ACME_EAB_KEYFILE ${eab.keyFile} holds no base64url MAC key`);
    return { kid: eab.kid, hmacKey: text };
  }

  /** The account key from the cache, made (0600, atomically) the first time: `made` then. */
  private async accountKey(acme: Acme): Promise<{ key: Buffer; made: boolean }> {
    const file = this.config.accountKeyFile;
    try {
      return { key: readFileSync(osPath(file)), made: false };
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT") throw error;
    }
    mkdirSync(osPath(dirname(file)), { recursive: true, mode: 0o700 });
    const key = await acme.crypto.createPrivateEcdsaKey();
    try {
      writeFileAtomic(file, key, { mode: 0o600 });
    } catch (error) {
      // Another tlsd made one meanwhile: use theirs.
      if ((error as { code?: string }).code === "EEXIST")
        return { key: readFileSync(osPath(file)), made: false };
      throw error;
    }
    return { key, made: true };
  }
}
