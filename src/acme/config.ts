// tlsd's on-demand certificates: the configuration, from the environment (as the rest of
// tlsd's). Off unless ACME_DIRECTORY is set; then CERTDIR (the cache, certbot's layout) and
// ACME_NAMES (which names may be asked for: never "any name a client sends") are required.
import { Resolver } from "node:dns";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import { canonicalAddress } from "../net/ip.ts";
import { isSniPattern } from "../tls/sni-pattern.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError } from "../ucspi/errors.ts";
import { osFromBytes } from "../ucspi/os-string.ts";

/** File names here are kept as a command-line word is (src/ucspi/os-string.ts: from the
 * environment's bytes, a byte that is not UTF-8 escaped), for node:fs through osPath. */
export interface AcmeConfig {
  directoryUrl: string;
  /** certbot's live/ layout: NAME/fullchain.pem and NAME/privkey.pem; the account key in
   * .acme/ (a dot entry, which tlsd's CERTDIR scan skips). */
  cacheDir: string;
  accountKeyFile: string;
  /** Names and `*.parent` patterns (one label) that may be ordered; empty: any name the other
   * policies allow (see name-policy.ts). */
  names: string[];
  /** ACME_RESOLVE: a name must resolve to an address of this host. */
  resolve: boolean;
  /** ACME_RESOLVER: the DNS servers (ip or ip:port) asked for it, and through which
   * ACME_DNS_WAIT finds the zone's servers (each of them is asked for the record itself where
   * those cannot be found); empty: the system's resolver. */
  resolvers: string[];
  /** ACME_ASK: the program that says yes (exit 0) or no for a name. */
  ask: string | undefined;
  /** How long the verdicts of ACME_RESOLVE and ACME_ASK are kept (ms). */
  policyTtlMs: number;
  /** PATH, for the ask and hook programs. */
  searchPath: string;
  /** Trust anchors for the ACME server's own HTTPS (a private CA); else the system's. */
  caFile: string | undefined;
  email: string | undefined;
  /** At most this many orders in any hour (renewals included). */
  ordersPerHour: number;
  /** How long a handshake waits for its name's first certificate (ms). */
  waitMs: number;
  /** After that wait: the default certificate (CERTFILE/KEYFILE) instead of a failure. */
  fallbackToDefault: boolean;
  /** Renew when less than this much of a certificate's life is left (ms); undefined: a third
   * of its lifetime (30 days of Let's Encrypt's 90). */
  renewBeforeMs: number | undefined;
  /** tls-alpn-01 (tlsd answers on its own port), http-01 (acme-challenge answers on port
   * 80, from the key authorizations written to httpDir) or dns-01 (dnsHook publishes the
   * TXT record). */
  challenge: AcmeChallenge;
  httpDir: string;
  /** ACME_DNS_HOOK: the program that publishes and removes dns-01 records (set with dns-01). */
  dnsHook: string | undefined;
  /** ACME_DNS_WAIT: how long to wait, after ACME_DNS_HOOK published a record, for it to be
   * seen (at ACME_RESOLVER, else the system's) before the CA is told (ms); 0: not asked. */
  dnsWaitMs: number;
  /** ACME_WILDCARD: a name that a `*.parent` entry of ACME_NAMES allows is served by one
   * certificate for `*.parent` (dns-01 only). */
  wildcard: boolean;
  /** ACME_PROFILE: the certificate profile asked for (draft-aaron-acme-profiles), if any. */
  profile: string | undefined;
  /** ACME_HOOK: a program run after each certificate is installed (certbot's deploy hook). */
  hook: string | undefined;
  /** ACME_KEY_TYPE: the kind of key each certificate gets (the account's is P-256). */
  keyType: AcmeKeyType;
  /** External account binding (RFC 8555 §7.3.4), for a CA that wants one at registration:
   * ACME_EAB_KID, and the file its MAC key is read from (ACME_EAB_KEYFILE, an OS path). */
  eab: { kid: string; keyFile: string } | undefined;
}

/** Where http-01 key authorizations are written, for acme-challenge to answer with: beside
 * .acme (which holds the account key and stays private), readable by a port-80 stage that runs
 * as another user. certDir: a file name (osFromBytes), not the environment's bytes. */
export function httpChallengeDir(certDir: string): string {
  return join(resolve(certDir), ".acme-http-01");
}

const EXIT_CONFIG = 100;

export const ACME_CHALLENGES = ["tls-alpn-01", "http-01", "dns-01"] as const;
export type AcmeChallenge = (typeof ACME_CHALLENGES)[number];

/** The challenge tlsd answers: ACME_CHALLENGE's, dns-01 when only ACME_DNS_HOOK is set,
 * tls-alpn-01 by default; undefined for a value that is none of them. */
export function challengeNamed(env: Readonly<Env>): AcmeChallenge | undefined {
  const named = env["ACME_CHALLENGE"] || (env["ACME_DNS_HOOK"] ? "dns-01" : "tls-alpn-01");
  return ACME_CHALLENGES.find((kind) => kind === named);
}

/** The keys a certificate on demand may have (Caddy's names): ECDSA on P-256 (the default)
 * or P-384, or RSA of 2048, 3072 or 4096 bits for clients that know no ECDSA. */
export const ACME_KEY_TYPES = ["p256", "p384", "rsa2048", "rsa3072", "rsa4096"] as const;
export type AcmeKeyType = (typeof ACME_KEY_TYPES)[number];

export function acmeConfig(env: Readonly<Env>): AcmeConfig | undefined {
  const directoryUrl = env["ACME_DIRECTORY"];
  if (directoryUrl === undefined) return undefined;
  if (!/^https?:\/\/\S+$/.test(directoryUrl))
    throw new FatalError(`ACME_DIRECTORY is not a URL: '${directoryUrl}'`, EXIT_CONFIG);
  const certDir = env["CERTDIR"];
  if (!certDir)
    throw new FatalError("ACME_DIRECTORY needs CERTDIR (where certificates go)", EXIT_CONFIG);
  // An address (RFC 8738: a certificate for it, for the clients that send no name) in one
  // spelling, the one its CERTDIR entry and TCPLOCALIP have.
  const names = (env["ACME_NAMES"] ?? "")
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((n) => canonicalAddress(n) ?? n.toLowerCase());
  const resolveNames = flag(env, "ACME_RESOLVE");
  const ask = env["ACME_ASK"] || undefined;
  if (names.length === 0 && !resolveNames && ask === undefined)
    throw new FatalError(
      "ACME_DIRECTORY needs a name policy: ACME_NAMES (the names that may be ordered), ACME_RESOLVE or ACME_ASK",
      EXIT_CONFIG,
    );
  const resolvers = (env["ACME_RESOLVER"] ?? "").split(/[\s,]+/).filter(Boolean);
  const badResolver = resolvers.find((server) => !validResolver(server));
  if (badResolver !== undefined)
    throw new FatalError(
      `ACME_RESOLVER: IP addresses (and :port), not '${badResolver}'`,
      EXIT_CONFIG,
    );
  for (const name of names) {
    // A CA issues for fully qualified names only: a dot below any `*.`.
    if (isIP(name)) continue;
    if (!isSniPattern(name) || !name.replace(/^\*\./, "").includes("."))
      throw new FatalError(
        `ACME_NAMES: not a host name, *.name or IP address: '${name}'`,
        EXIT_CONFIG,
      );
  }
  const profile = env["ACME_PROFILE"] || undefined;
  if (profile !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(profile))
    throw new FatalError(`ACME_PROFILE: a profile's name, not '${profile}'`, EXIT_CONFIG);
  const keyType = (env["ACME_KEY_TYPE"] || "p256") as AcmeKeyType;
  if (!ACME_KEY_TYPES.includes(keyType))
    throw new FatalError(
      `ACME_KEY_TYPE: ${ACME_KEY_TYPES.join(", ")}, not '${keyType}'`,
      EXIT_CONFIG,
    );
  const eabKid = env["ACME_EAB_KID"] || undefined;
  const eabKeyFile = env["ACME_EAB_KEYFILE"] || undefined;
  if ((eabKid === undefined) !== (eabKeyFile === undefined))
    throw new FatalError("ACME_EAB_KID and ACME_EAB_KEYFILE go together", EXIT_CONFIG);
  if (eabKid !== undefined && !/^[\x21-\x7e]{1,256}$/.test(eabKid))
    throw new FatalError(`ACME_EAB_KID: a key id, not '${eabKid}'`, EXIT_CONFIG);
  const cacheDir = resolve(osFromBytes(certDir));
  const challenge = challengeNamed(env);
  if (challenge === undefined)
    throw new FatalError(
      `ACME_CHALLENGE: ${ACME_CHALLENGES.join(", ")}, not '${env["ACME_CHALLENGE"] ?? ""}'`,
      EXIT_CONFIG,
    );
  const dnsHook = env["ACME_DNS_HOOK"] || undefined;
  if (challenge === "dns-01" && dnsHook === undefined)
    throw new FatalError(
      "ACME_CHALLENGE=dns-01 needs ACME_DNS_HOOK (the program that publishes the TXT record)",
      EXIT_CONFIG,
    );
  if (challenge !== "dns-01" && dnsHook !== undefined)
    throw new FatalError(
      `ACME_DNS_HOOK is for dns-01, not ACME_CHALLENGE=${challenge}`,
      EXIT_CONFIG,
    );
  const address = names.find((name) => isIP(name));
  if (address !== undefined && challenge === "dns-01")
    throw new FatalError(
      `ACME_NAMES: an IP address (${address}) is validated by http-01 or tls-alpn-01, not dns-01`,
      EXIT_CONFIG,
    );
  const dnsWaitMs = count(env, "ACME_DNS_WAIT", 0) * 1000;
  if (dnsWaitMs > 0 && challenge !== "dns-01")
    throw new FatalError(
      `ACME_DNS_WAIT is for dns-01, not ACME_CHALLENGE=${challenge}`,
      EXIT_CONFIG,
    );
  const wildcard = flag(env, "ACME_WILDCARD");
  if (wildcard && challenge !== "dns-01")
    throw new FatalError(
      "ACME_WILDCARD needs dns-01 (ACME_DNS_HOOK): a CA validates a wildcard name by DNS only",
      EXIT_CONFIG,
    );
  if (wildcard && !names.some((name) => name.startsWith("*.")))
    throw new FatalError("ACME_WILDCARD needs a *.name in ACME_NAMES", EXIT_CONFIG);
  return {
    directoryUrl,
    cacheDir,
    accountKeyFile: join(cacheDir, ".acme", "account.key"),
    names,
    resolve: resolveNames,
    resolvers,
    ask,
    policyTtlMs: count(env, "ACME_POLICY_TTL", 600) * 1000,
    searchPath: env["PATH"] ?? "/usr/bin:/bin",
    caFile: env["ACME_CAFILE"] ? resolve(osFromBytes(env["ACME_CAFILE"])) : undefined,
    email: env["ACME_EMAIL"] || undefined,
    ordersPerHour: count(env, "ACME_RATE", 10),
    waitMs: count(env, "ACME_WAIT", 15_000),
    fallbackToDefault: env["ACME_FALLBACK"] === "default",
    renewBeforeMs: env["ACME_RENEW_BEFORE"] ? count(env, "ACME_RENEW_BEFORE", 0) * 1000 : undefined,
    challenge,
    httpDir: httpChallengeDir(cacheDir),
    dnsHook,
    dnsWaitMs,
    wildcard,
    profile,
    hook: env["ACME_HOOK"] || undefined,
    keyType,
    eab:
      eabKid && eabKeyFile ? { kid: eabKid, keyFile: resolve(osFromBytes(eabKeyFile)) } : undefined,
  };
}

/** What node:dns takes as a server: `1.2.3.4`, `1.2.3.4:53`, `::1`, `[::1]:53`. */
function validResolver(text: string): boolean {
  try {
    new Resolver().setServers([text]);
    return true;
  } catch {
    return false;
  }
}

function flag(env: Readonly<Env>, name: string): boolean {
  const text = env[name];
  if (text === undefined || text === "" || text === "0" || text === "no") return false;
  if (text === "1" || text === "yes") return true;
  throw new FatalError(`${name}: yes or no, not '${text}'`, EXIT_CONFIG);
}

function count(env: Readonly<Env>, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  if (!/^[0-9]{1,9}$/.test(text))
    throw new FatalError(`${name} needs a number, not '${text}'`, EXIT_CONFIG);
  return Number(text);
}
