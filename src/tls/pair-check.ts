// Whether a certificate file and a key file make a pair a server can serve, said in our words
// before OpenSSL is asked: its own message for a mismatch is an error-queue dump
// ("error:05800074:x509 certificate routines::key values mismatch"), and a certificate and key of
// different types (RSA and EC) pass createSecureContext, to fail every handshake after.
import { X509Certificate, createPrivateKey } from "node:crypto";
import type { KeyObject } from "node:crypto";

/** Why `cert` (the first certificate of a PEM chain) and `key` are not a pair, or undefined;
 * the caller names the files. */
export function pairProblem(cert: Buffer, key: Buffer): string | undefined {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch {
    return "the certificate file holds no PEM certificate";
  }
  const text = key.toString("latin1");
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text))
    return "the key is encrypted: give an unencrypted key";
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key, format: "pem" });
  } catch {
    if (/-----BEGIN CERTIFICATE-----/.test(text) && !/PRIVATE KEY-----/.test(text))
      return "the key file holds a certificate, not a private key";
    return "the key file holds no private key: want PEM (PKCS#8, SEC1 or PKCS#1)";
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    const [ours, theirs] = [privateKey.asymmetricKeyType, certificate.publicKey.asymmetricKeyType];
    return ours === theirs
      ? "the key does not belong to the certificate"
      : `the key (${ours}) does not belong to the certificate (${theirs})`;
  }
  return undefined;
}
