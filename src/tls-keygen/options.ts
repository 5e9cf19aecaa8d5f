// tls-keygen's command line: a command, then options (djb letters or long names), then the
// file names (two; ticket's and ocsp's one). Every value is checked here, before any key is made, and a
// bad one is named.
import { FatalError, UsageError } from "../ucspi/errors.ts";
import { getopt } from "../cli/getopt.ts";
import { KEY_TYPES } from "../x509/keys.ts";
import type { KeyType } from "../x509/keys.ts";
import { parseAltNames, parseSubtrees, shown } from "../x509/names.ts";
import type { AltName, Subtree } from "../x509/names.ts";

export const COMMANDS = [
  "self-signed",
  "ensure",
  "ca",
  "leaf",
  "csr",
  "ticket",
  "ocsp",
  "renew",
  "revoke",
  "list",
] as const;
export type Command = (typeof COMMANDS)[number];
/** The commands that make a key and a certificate or request. */
export type KeyCommand = Exclude<Command, "ticket" | "ocsp" | "renew" | "revoke" | "list">;

const KEY = "[ -t ecdsa|ed25519|rsa ] [ -b bits ]";
const EKU = "[ --server ] [ --client ]";
const USAGES: Record<Command, string> = {
  "self-signed": `tls-keygen self-signed [ -fvr ] ${KEY} [ -d days ] [ -n cn ] [ -s names ] ${EKU} certfile keyfile`,
  ensure: `tls-keygen ensure [ -v ] ${KEY} [ -d days ] [ -n cn ] [ -s names ] ${EKU} certfile keyfile`,
  ca: `tls-keygen ca [ -fvr ] ${KEY} [ -d days ] [ -n cn ] [ -p names ] cacert cakey`,
  leaf: `tls-keygen leaf [ -fvr ] ${KEY} [ -d days ] [ -n cn ] [ -s names ] ${EKU} -C cacert -K cakey certfile keyfile`,
  csr: `tls-keygen csr [ -fvr ] ${KEY} [ -n cn ] [ -s names ] csrfile keyfile`,
  ticket: "tls-keygen ticket [ -v ] [ -k count ] ticketfile",
  ocsp: "tls-keygen ocsp [ -v ] [ -u url ] chainfile|certdir",
  renew: "tls-keygen renew [ -v ] certdir",
  revoke: "tls-keygen revoke [ -R reason ] certdir name",
  list: "tls-keygen list certdir",
};

/** The usage line for no command or an unknown one. */
export const USAGE = `tls-keygen ${COMMANDS.join("|")} [ options ] files`;

/** The usage line of a command (word for word its synopsis line in docs/tls-keygen.md). */
export function usageFor(command: string | undefined): string {
  return (COMMANDS as readonly string[]).includes(command ?? "")
    ? USAGES[command as Command]
    : USAGE;
}

export interface KeygenOptions {
  command: KeyCommand;
  /** The certificate (or CSR) file and the key file. */
  certFile: string;
  keyFile: string;
  keyType: KeyType;
  rsaBits: number;
  days: number;
  /** The subject's common name; undefined: derived from the names. */
  cn: string | undefined;
  sans: AltName[];
  permit: Subtree[];
  server: boolean;
  client: boolean;
  caCert: string | undefined;
  caKey: string | undefined;
  /** The key file exists: sign with it instead of making a new key. */
  reuseKey: boolean;
  force: boolean;
  verbose: boolean;
}

/** `ticket`: tlsd's TICKETFILE, made or rotated. */
export interface TicketOptions {
  command: "ticket";
  file: string;
  /** How many keys the file keeps (the newest). */
  keep: number;
  verbose: boolean;
}

/** `ocsp`: the OCSP response for a chain's leaf, fetched and kept beside it for tlsd. */
export interface OcspOptions {
  command: "ocsp";
  chainFile: string;
  /** The responder, in place of the one the certificate names. */
  url: string | undefined;
  verbose: boolean;
}

/** `renew`: the certificates of tlsd's CERTDIR that are due, renewed from its ACME CA (the
 * ACME_* settings tlsd reads, from the environment). */
export interface RenewOptions {
  command: "renew";
  certDir: string;
  verbose: boolean;
}

/** `revoke`: the certificate of `name` in tlsd's CERTDIR, revoked at its ACME CA and taken out
 * of service (the ACME_* settings tlsd reads, from the environment). */
export interface RevokeOptions {
  command: "revoke";
  certDir: string;
  name: string;
  /** A name of REVOCATION_REASONS; keyCompromise is asked for with the certificate's own key. */
  reason: string;
}

/** `list`: what tlsd's CERTDIR holds, a line per certificate. */
export interface ListOptions {
  command: "list";
  certDir: string;
}

/** The reasons a CA takes from a subscriber (RFC 5280 section 5.3.1; Let's Encrypt's list). */
export const REVOCATION_REASONS: Record<string, number> = {
  unspecified: 0,
  keyCompromise: 1,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
};

/** The most keys `ticket` keeps: 1,000 lines of 65 bytes stay under tlsd's 64 KiB. */
export const MAX_KEEP = 1000;

const LONG_OF: Record<string, string> = {
  f: "force",
  v: "verbose",
  r: "reuse-key",
  t: "key-type",
  b: "rsa-bits",
  d: "days",
  n: "cn",
  s: "san",
  p: "permit",
  C: "ca-cert",
  K: "ca-key",
  k: "keep",
  u: "url",
  R: "reason",
};

const LONG = [
  "force",
  "verbose",
  "reuse-key",
  "key-type=",
  "rsa-bits=",
  "days=",
  "cn=",
  "san=",
  "permit=",
  "ca-cert=",
  "ca-key=",
  "keep=",
  "url=",
  "reason=",
  "server",
  "client",
];

/** The options each command takes (long names). */
const COMMON = ["verbose", "key-type", "rsa-bits", "cn"];
const ALLOWED: Record<Command, readonly string[]> = {
  "self-signed": [...COMMON, "force", "reuse-key", "days", "san", "server", "client"],
  ensure: [...COMMON, "days", "san", "server", "client"],
  ca: [...COMMON, "force", "reuse-key", "days", "permit"],
  leaf: [...COMMON, "force", "reuse-key", "days", "san", "server", "client", "ca-cert", "ca-key"],
  csr: [...COMMON, "force", "reuse-key", "san"],
  ticket: ["verbose", "keep"],
  ocsp: ["verbose", "url"],
  renew: ["verbose"],
  revoke: ["reason"],
  list: [],
};

export const MAX_DAYS = 36500;

/** argv after the program name → options; UsageError or FatalError (exit 100) when bad. */
export function parseKeygenArgs(
  args: readonly string[],
): KeygenOptions | TicketOptions | OcspOptions | RenewOptions | RevokeOptions | ListOptions {
  const [word, ...rest] = args;
  if (word === undefined || word === "") throw new UsageError("", USAGE);
  if (!(COMMANDS as readonly string[]).includes(word)) {
    throw new UsageError(`unknown command: ${shown(word)}`, USAGE);
  }
  const command = word as Command;
  const usage = USAGES[command];
  const parsed = withUsage(usage, () =>
    getopt(rest, { flags: "fvr", values: "tbdnspCKkuR", long: LONG }),
  );
  const values = new Map<string, string[]>();
  for (const option of parsed.options) {
    const name = LONG_OF[option.name] ?? option.name;
    if (!ALLOWED[command].includes(name)) {
      throw new UsageError(`option --${name} does not apply to ${command}`, usage);
    }
    values.set(name, [...(values.get(name) ?? []), option.value]);
  }
  const [certFile = "", keyFile = ""] = fileNames(command, parsed.rest, usage);
  const last = (name: string) => values.get(name)?.at(-1);
  const has = (name: string) => values.has(name);
  if (command === "ticket") {
    const keep = parseNumber(
      "keep",
      last("keep"),
      3,
      (n) => n >= 2 && n <= MAX_KEEP,
      `a whole number from 2 to ${MAX_KEEP}`,
    );
    return { command, file: certFile, keep, verbose: has("verbose") };
  }
  if (command === "ocsp")
    return { command, chainFile: certFile, url: parseUrl(last("url")), verbose: has("verbose") };
  if (command === "renew") return { command, certDir: certFile, verbose: has("verbose") };
  if (command === "list") return { command, certDir: certFile };
  if (command === "revoke")
    return { command, certDir: certFile, name: keyFile, reason: parseReason(last("reason")) };
  if (command === "leaf" && (!has("ca-cert") || !has("ca-key"))) {
    throw new UsageError("leaf needs -C cacert and -K cakey", usage);
  }
  const keyType = parseKeyType(last("key-type"));
  if (has("rsa-bits") && keyType !== "rsa") {
    throw new FatalError("option --rsa-bits needs --key-type rsa", 100);
  }
  const reuseKey = has("reuse-key");
  if (reuseKey && (has("key-type") || has("rsa-bits"))) {
    throw new FatalError(
      `--reuse-key signs with the key in ${keyFile}: no --key-type or --rsa-bits`,
      100,
    );
  }
  return {
    command,
    certFile,
    keyFile,
    keyType,
    rsaBits: parseNumber(
      "rsa-bits",
      last("rsa-bits"),
      2048,
      (n) => n >= 2048 && n <= 8192 && n % 8 === 0,
      "a multiple of 8 from 2048 to 8192",
    ),
    days: parseNumber(
      "days",
      last("days"),
      command === "ca" ? 3650 : 365,
      (n) => n >= 1 && n <= MAX_DAYS,
      `a whole number from 1 to ${MAX_DAYS}`,
    ),
    cn: parseCommonName(last("cn")),
    sans: parseAltNames(values.get("san") ?? []),
    permit: parseSubtrees(values.get("permit") ?? []),
    server: has("server") || !has("client"),
    client: has("client"),
    caCert: last("ca-cert"),
    caKey: last("ca-key"),
    reuseKey,
    force: has("force"),
    verbose: has("verbose"),
  };
}

/** The file names (two, or ticket's one): all there, no more, not empty, not the same. */
function fileNames(command: Command, files: readonly string[], usage: string): string[] {
  const names = FILE_NAMES[command] ?? ["certfile", "keyfile"];
  if (files.length < names.length) {
    throw new UsageError(`missing ${names.slice(files.length).join(" and ")}`, usage);
  }
  if (files.length > names.length) {
    const extra = files[names.length] ?? "";
    const hint = extra.startsWith("-") ? " (options go before the file names)" : "";
    throw new UsageError(`extra argument: ${shown(extra)}${hint}`, usage);
  }
  if (files.includes("")) throw new FatalError("empty file name", 100);
  const [first, second] = files;
  if (first === second) {
    throw new FatalError(`${names[0]} and ${names[1]} are the same file: ${first}`, 100);
  }
  return [...files];
}

const FILE_NAMES: Partial<Record<Command, string[]>> = {
  ca: ["cacert", "cakey"],
  csr: ["csrfile", "keyfile"],
  ticket: ["ticketfile"],
  ocsp: ["chainfile"],
  renew: ["certdir"],
  revoke: ["certdir", "name"],
  list: ["certdir"],
};

function withUsage<T>(usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(error.message, usage);
    throw error;
  }
}

function parseKeyType(value: string | undefined): KeyType {
  if (value === undefined) return "ecdsa";
  if ((KEY_TYPES as readonly string[]).includes(value)) return value as KeyType;
  throw new FatalError(`bad --key-type value ${shown(value)}: want ecdsa, ed25519 or rsa`, 100);
}

function parseNumber(
  name: string,
  value: string | undefined,
  fallback: number,
  ok: (n: number) => boolean,
  want: string,
): number {
  if (value === undefined) return fallback;
  const n = /^[1-9][0-9]{0,8}$/.test(value) ? Number(value) : NaN;
  if (!ok(n)) throw new FatalError(`bad --${name} value ${shown(value)}: want ${want}`, 100);
  return n;
}

/** An OCSP responder: http (as RFC 6960's and CAs' are) or https. */
function parseUrl(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:"))
    throw new FatalError(`bad --url value ${shown(value)}: want an http:// or https:// URL`, 100);
  return url.href;
}

function parseCommonName(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.length < 1 || value.length > 64) {
    throw new FatalError(`bad --cn value ${shown(value)}: want 1 to 64 characters`, 100);
  }
  if (/[\x00-\x1f\x7f]/.test(value)) {
    throw new FatalError(`bad --cn value ${shown(value)}: has a control character`, 100);
  }
  return value;
}

function parseReason(value: string | undefined): string {
  if (value === undefined) return "unspecified";
  if (!Object.hasOwn(REVOCATION_REASONS, value))
    throw new FatalError(
      `--reason: ${Object.keys(REVOCATION_REASONS).join(", ")}, not ${shown(value)}`,
      100,
    );
  return value;
}
