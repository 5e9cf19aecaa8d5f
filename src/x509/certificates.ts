// X.509 certificates and requests as OpenSSL 3 and Node's tls want them: a self-signed pair, a
// small CA (basicConstraints CA:TRUE pathlen 0, keyCertSign, optional nameConstraints), leaves
// it signs (serverAuth and/or clientAuth, SANs for names and IPs) and PKCS#10 requests. Every
// certificate has a random 128-bit serial and subject/authority key identifiers.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { randomBytes, webcrypto } from "node:crypto";
import type { SigningKey } from "./keys.ts";
import { NAME_CONSTRAINTS_OID, nameConstraintsDer } from "./name-constraints.ts";
import type { AltName, Subtree } from "./names.ts";

x509.cryptoProvider.set(webcrypto);

/** What a certificate's key may do in TLS (extendedKeyUsage). */
export interface Usage {
  server: boolean;
  client: boolean;
}

export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

/** From five minutes before `now` (clocks differ) to `days` days after it. */
export function validityFor(days: number, now: Date): Validity {
  return {
    notBefore: new Date(now.getTime() - 5 * 60_000),
    notAfter: new Date(now.getTime() + days * 86_400_000),
  };
}

export interface SubjectParams {
  /** The subject's common name; none (an empty subject, a critical SAN) for CA-signed leaves. */
  cn: string | undefined;
  sans: readonly AltName[];
}

/** A self-signed end-entity certificate (not a CA: trust it as itself). */
export async function selfSignedCertificate(
  key: SigningKey,
  subject: SubjectParams,
  usage: Usage,
  validity: Validity,
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: subjectName(subject.cn),
    ...validity,
    signingAlgorithm: key.signing,
    keys: key.crypto,
    extensions: [
      ...leafExtensions(key, subject, usage),
      await x509.SubjectKeyIdentifierExtension.create(key.crypto.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(key.crypto.publicKey),
    ],
  });
}

/** A CA certificate that signs leaves only (pathlen 0), limited to `permit` when given. */
export async function caCertificate(
  key: SigningKey,
  cn: string,
  permit: readonly Subtree[],
  validity: Validity,
): Promise<x509.X509Certificate> {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(key.crypto.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(key.crypto.publicKey),
  ];
  if (permit.length > 0) {
    extensions.push(new x509.Extension(NAME_CONSTRAINTS_OID, true, nameConstraintsDer(permit)));
  }
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: subjectName(cn),
    ...validity,
    signingAlgorithm: key.signing,
    keys: key.crypto,
    extensions,
  });
}

/** The parts of a CA that signing needs. */
export interface Issuer {
  certificate: x509.X509Certificate;
  key: SigningKey;
}

/** A leaf for `key`'s public half, signed by the CA. */
export async function leafCertificate(
  key: SigningKey,
  issuer: Issuer,
  subject: SubjectParams,
  usage: Usage,
  validity: Validity,
): Promise<x509.X509Certificate> {
  const caKeyId = issuer.certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: subjectName(subject.cn),
    issuer: issuer.certificate.subjectName,
    ...validity,
    signingAlgorithm: issuer.key.signing,
    publicKey: key.crypto.publicKey,
    signingKey: issuer.key.crypto.privateKey,
    extensions: [
      ...leafExtensions(key, subject, usage),
      await x509.SubjectKeyIdentifierExtension.create(key.crypto.publicKey),
      caKeyId
        ? new x509.AuthorityKeyIdentifierExtension(caKeyId)
        : await x509.AuthorityKeyIdentifierExtension.create(issuer.key.crypto.publicKey),
    ],
  });
}

/** A PKCS#10 request (for a public CA) with the names as a requested SAN extension. */
export async function certificateRequest(
  key: SigningKey,
  subject: SubjectParams,
): Promise<x509.Pkcs10CertificateRequest> {
  const publicKey = key.crypto.publicKey;
  return x509.Pkcs10CertificateRequestGenerator.create({
    name: subjectName(subject.cn),
    keys: { privateKey: key.crypto.privateKey, publicKey },
    signingAlgorithm: key.signing,
    extensions: subject.sans.length > 0 ? [altNames(subject.sans, subject.cn === undefined)] : [],
  });
}

/** The certificate in a PEM file's text, or undefined if there is none. */
export function parseCertificate(pem: string): x509.X509Certificate | undefined {
  try {
    return new x509.X509Certificate(pem);
  } catch {
    return undefined;
  }
}

/** The authority key identifier's keyIdentifier (hex), if the certificate has one. */
export function authorityKeyId(certificate: x509.X509Certificate): string | undefined {
  return certificate.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId || undefined;
}

/** True when basicConstraints says CA:TRUE. */
export function isCaCertificate(certificate: x509.X509Certificate): boolean {
  return certificate.getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

/** False when the certificate has a keyUsage without keyCertSign (it may not sign others). */
export function maySignCertificates(certificate: x509.X509Certificate): boolean {
  const usage = certificate.getExtension(x509.KeyUsagesExtension);
  return !usage || (usage.usages & x509.KeyUsageFlags.keyCertSign) !== 0;
}

/** PEM text with a final newline, as openssl writes it. */
export function pemOf(item: x509.X509Certificate | x509.Pkcs10CertificateRequest): string {
  return `${item.toString("pem").replace(/\r\n/g, "\n").trimEnd()}\n`;
}

function leafExtensions(key: SigningKey, subject: SubjectParams, usage: Usage): x509.Extension[] {
  const flags = key.rsa
    ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
    : x509.KeyUsageFlags.digitalSignature;
  const ekus: string[] = [];
  if (usage.server) ekus.push(x509.ExtendedKeyUsage.serverAuth);
  if (usage.client) ekus.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(flags, true),
    new x509.ExtendedKeyUsageExtension(ekus),
  ];
  if (subject.sans.length > 0) extensions.push(altNames(subject.sans, subject.cn === undefined));
  return extensions;
}

/** RFC 5280 4.2.1.6: the SAN extension is critical when the subject is empty. */
function altNames(
  sans: readonly AltName[],
  critical = false,
): x509.SubjectAlternativeNameExtension {
  // x509 reads IPv6 as eight hex groups only (no "::ffff:1.2.3.4"), so give it that form.
  const names = sans.map((n) =>
    n.type === "ip" && n.bytes.length === 16
      ? { type: "ip" as const, value: hexGroups(n.bytes) }
      : { type: n.type, value: n.value },
  );
  return new x509.SubjectAlternativeNameExtension(names, critical);
}

function hexGroups(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  }
  return groups.join(":");
}

function subjectName(cn: string | undefined): x509.JsonName {
  return cn === undefined ? [] : [{ "2.5.4.3": [cn] }];
}

/** 16 random bytes, positive and without a leading zero byte (so always 16 bytes in DER). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return bytes.toString("hex");
}
