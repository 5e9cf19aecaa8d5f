// The work of tls-keygen: check the outputs, read the inputs, make the key, the certificate or
// the request, and write them atomically (keys 0600). No process globals: the cli passes the
// options, a log function and the time.
import { X509Certificate as NodeCertificate } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  caCertificate,
  certificateRequest,
  isCaCertificate,
  leafCertificate,
  maySignCertificates,
  parseCertificate,
  pemOf,
  selfSignedCertificate,
  validityFor,
} from "../x509/certificates.ts";
import type { Issuer, SubjectParams, Usage, Validity } from "../x509/certificates.ts";
import { generateKey, keyFromPem, keyPem, sameKey } from "../x509/keys.ts";
import type { SigningKey } from "../x509/keys.ts";
import { NAME_CONSTRAINTS_OID, parseNameConstraints, permits } from "../x509/name-constraints.ts";
import { parseAltNames } from "../x509/names.ts";
import { AtomicWriteError, writeFilesAtomic } from "../files/atomic-write.ts";
import type { AtomicFile, FileSystem } from "../files/atomic-write.ts";
import { FatalError } from "../ucspi/errors.ts";
import { checkDistinct, checkKept, checkOutput, exists, readInput } from "./files.ts";
import type { KeygenOptions } from "./options.ts";

export interface KeygenContext {
  /** Writes one line (with its newline) to the log (stderr). */
  log: (line: string) => void;
  now: Date;
  /** For tests: the file system the atomic writer uses. */
  fs?: FileSystem;
}

/** Localhost by its name and both loopback addresses: the default names of a server. */
const LOCAL_NAMES = ["localhost", "127.0.0.1", "::1"];
const DEFAULT_CA_CN = "tls-keygen CA";

/** Runs one command; returns the exit code. */
export async function runKeygen(options: KeygenOptions, context: KeygenContext): Promise<number> {
  checkDistinct(...namedFiles(options));
  if (options.command === "ensure") return ensure(options, context);
  const outputs = options.reuseKey ? [options.certFile] : [options.certFile, options.keyFile];
  for (const path of outputs) checkOutput(path, options.force);
  const plan = planFor(options, context);
  const key = await obtainKey(options);
  write(options, key, await makePem(options, plan, key), context, options.force);
  return 0;
}

/** The files the command names: what it writes, and what it reads; what each one is. */
function namedFiles(options: KeygenOptions): [Named[], Named[]] {
  const [cert, key] =
    options.command === "ca"
      ? ["cacert", "cakey"]
      : options.command === "csr"
        ? ["csrfile", "keyfile"]
        : ["certfile", "keyfile"];
  const outputs = [{ path: options.certFile, what: cert }];
  const inputs: Named[] = [];
  (options.reuseKey ? inputs : outputs).push({ path: options.keyFile, what: key });
  if (options.caCert !== undefined) inputs.push({ path: options.caCert, what: "CA certificate" });
  if (options.caKey !== undefined) inputs.push({ path: options.caKey, what: "CA key" });
  return [outputs, inputs];
}

type Named = { path: string; what: string };

/** A self-signed pair, only if neither file exists; both there: nothing to do. */
async function ensure(options: KeygenOptions, context: KeygenContext): Promise<number> {
  const { certFile, keyFile } = options;
  let [haveCert, haveKey] = [exists(certFile), exists(keyFile)];
  // Half a pair may be another ensure between its two moves: give it a moment to finish.
  for (let i = 0; i < 10 && haveCert !== haveKey; i++) {
    await sleep(50);
    [haveCert, haveKey] = [exists(certFile), exists(keyFile)];
  }
  if (haveCert && haveKey) {
    for (const path of [certFile, keyFile]) checkKept(path, "remove it, or make a new pair");
    if (options.verbose) context.log(`tls-keygen: info: kept ${certFile} and ${keyFile}\n`);
    return 0;
  }
  if (haveCert || haveKey) {
    const [there, missing] = haveCert ? [certFile, keyFile] : [keyFile, certFile];
    throw new FatalError(
      `${there} exists but ${missing} does not: remove it, or make a new pair with self-signed --force`,
      100,
    );
  }
  try {
    for (const path of [certFile, keyFile]) checkOutput(path, false);
  } catch (error) {
    // A file of the pair appeared since it was looked for: another ensure's, as below.
    if (!(exists(certFile) || exists(keyFile))) throw error;
    return keepTheirs(options, context, error);
  }
  const plan = planFor(options, context);
  const key = await obtainKey(options);
  const pem = await makePem(options, plan, key);
  try {
    write(options, key, pem, context, false);
  } catch (error) {
    if (!(error instanceof AtomicWriteError) || error.code !== "EEXIST") throw error;
    return keepTheirs(options, context, error);
  }
  return 0;
}

/** Another ensure made the pair first: waits for it to finish, then keeps its pair; `error`
 * (ours) if it never does. */
async function keepTheirs(
  options: KeygenOptions,
  context: KeygenContext,
  error: unknown,
): Promise<number> {
  const { certFile, keyFile } = options;
  for (let i = 0; i < 40 && !(exists(certFile) && exists(keyFile)); i++) await sleep(50);
  if (!(exists(certFile) && exists(keyFile))) throw error;
  for (const path of [certFile, keyFile]) checkKept(path, "remove it, or make a new pair");
  if (options.verbose) context.log(`tls-keygen: info: kept ${certFile} and ${keyFile}\n`);
  return 0;
}

async function obtainKey(options: KeygenOptions): Promise<SigningKey> {
  if (options.reuseKey) return keyFromPem(readInput(options.keyFile, "key"), options.keyFile);
  return generateKey(options.keyType, options.rsaBits);
}

function readIssuer(options: KeygenOptions): Issuer {
  const certFile = options.caCert ?? "";
  const keyFile = options.caKey ?? "";
  const text = readInput(certFile, "CA certificate").toString("latin1");
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
  const certificate = block === undefined ? undefined : parseCertificate(block);
  const node = certificate && nodeCertificate(block ?? "");
  if (!certificate || !node) throw new FatalError(`no PEM certificate in ${certFile}`, 100);
  if (!isCaCertificate(certificate))
    throw new FatalError(`${certFile} is not a CA certificate (no CA:TRUE)`, 100);
  if (!maySignCertificates(certificate)) {
    throw new FatalError(`${certFile} may not sign certificates (no keyCertSign)`, 100);
  }
  const key = keyFromPem(readInput(keyFile, "CA key"), keyFile);
  if (!sameKey(key.publicKey, node.publicKey)) {
    throw new FatalError(`CA key ${keyFile} does not match CA certificate ${certFile}`, 100);
  }
  return { certificate, key };
}

function nodeCertificate(pem: string): NodeCertificate | undefined {
  try {
    return new NodeCertificate(pem);
  } catch {
    return undefined;
  }
}

/** What is known before any key is made: every input read and every check done. */
interface Plan {
  issuer: Issuer | undefined;
  subject: SubjectParams;
  usage: Usage;
  validity: Validity;
}

function planFor(options: KeygenOptions, context: KeygenContext): Plan {
  const usage = { server: options.server, client: options.client };
  const validity = validityFor(options.days, context.now);
  if (options.command === "ca") {
    return {
      issuer: undefined,
      subject: { cn: options.cn ?? DEFAULT_CA_CN, sans: [] },
      usage,
      validity,
    };
  }
  if (options.command !== "leaf") {
    const subject = subjectOf(options, options.command !== "csr" && options.server, false);
    return { issuer: undefined, subject, usage, validity };
  }
  const issuer = readIssuer(options);
  const subject = subjectOf(options, options.server, true);
  checkConstraints(issuer, subject, options.caCert ?? "");
  return { issuer, subject, usage, validity: cutToIssuer(validity, issuer, context) };
}

async function makePem(options: KeygenOptions, plan: Plan, key: SigningKey): Promise<string> {
  const { issuer, subject, usage, validity } = plan;
  switch (options.command) {
    case "ca":
      return pemOf(await caCertificate(key, subject.cn ?? DEFAULT_CA_CN, options.permit, validity));
    case "csr":
      return pemOf(await certificateRequest(key, subject));
    case "leaf":
      return pemOf(await leafCertificate(key, issuer as Issuer, subject, usage, validity));
    default:
      return pemOf(await selfSignedCertificate(key, subject, usage, validity));
  }
}

/**
 * The subject: the names given (localhost's for a server without any) and the CN: --cn, else
 * the first DNS name, else (a leaf, `emptyOk`) none, as a CN that looks like a host name is held
 * to a CA's DNS name constraints; else the first name.
 */
function subjectOf(options: KeygenOptions, server: boolean, emptyOk: boolean): SubjectParams {
  let sans = options.sans;
  if (sans.length === 0 && server) sans = parseAltNames(LOCAL_NAMES);
  const dns = sans.find((n) => n.type === "dns")?.value;
  const cn = options.cn ?? dns ?? (emptyOk ? undefined : sans[0]?.value);
  if (cn === undefined && sans.length === 0) {
    const what = options.command === "csr" ? "a request" : "a client certificate";
    throw new FatalError(`${what} needs a name: give --san or --cn`, 100);
  }
  return { cn, sans };
}

/** Refuses names the CA's nameConstraints forbid (a verifier would reject the leaf). */
function checkConstraints(issuer: Issuer, subject: SubjectParams, caFile: string): void {
  const extension = issuer.certificate.getExtension(NAME_CONSTRAINTS_OID);
  if (!extension) return;
  const constraints = parseNameConstraints(new Uint8Array(extension.value));
  if (!constraints) throw new FatalError(`unable to read the name constraints of ${caFile}`, 100);
  const names = [...subject.sans];
  // OpenSSL also holds a host-like CN (letters, digits, _ and -, an inner dot) to the DNS
  // constraints when there is no DNS name.
  const cn = subject.cn ?? "";
  if (
    !names.some((n) => n.type === "dns") &&
    /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)+$/i.test(cn)
  ) {
    names.push({ type: "dns", value: cn.toLowerCase() });
  }
  for (const name of names) {
    if (!permits(constraints, name)) {
      throw new FatalError(
        `the CA ${caFile} may not sign for ${name.value} (name constraints)`,
        100,
      );
    }
  }
}

/** A leaf must not outlive its CA: its end is cut to the CA's, with a warning. */
function cutToIssuer(validity: Validity, issuer: Issuer, context: KeygenContext): Validity {
  const end = issuer.certificate.notAfter;
  if (end.getTime() <= context.now.getTime()) {
    throw new FatalError(`the CA certificate expired on ${end.toISOString()}`, 100);
  }
  if (validity.notAfter.getTime() <= end.getTime()) return validity;
  context.log(`tls-keygen: warning: validity cut to the CA's end, ${end.toISOString()}\n`);
  return { notBefore: validity.notBefore, notAfter: end };
}

function write(
  options: KeygenOptions,
  key: SigningKey,
  pem: string,
  context: KeygenContext,
  overwrite: boolean,
): void {
  const files: AtomicFile[] = [];
  if (!options.reuseKey) files.push({ path: options.keyFile, data: keyPem(key), mode: 0o600 });
  files.push({ path: options.certFile, data: pem, mode: 0o644 });
  writeFilesAtomic(files, { overwrite, ...(context.fs ? { fs: context.fs } : {}) });
  if (!options.verbose) return;
  if (!options.reuseKey) {
    context.log(`tls-keygen: info: wrote ${options.keyFile} (${key.description} key)\n`);
  }
  if (options.command === "csr") {
    context.log(`tls-keygen: info: wrote ${options.certFile}\n`);
  } else {
    const cert = new NodeCertificate(pem);
    const subject = cert.subject.replace(/\n/g, ", ") || "empty subject";
    context.log(
      `tls-keygen: info: wrote ${options.certFile} (${subject}, until ${new Date(cert.validTo).toISOString()}, SHA-256 ${cert.fingerprint256})\n`,
    );
  }
}
