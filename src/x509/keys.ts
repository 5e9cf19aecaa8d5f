// Private keys for certificates: made new (ECDSA P-256, Ed25519, RSA) or read from a PEM file
// (PKCS#8, SEC1 or PKCS#1, unencrypted), as node:crypto KeyObjects plus the WebCrypto keys and
// signing algorithm that @peculiar/x509 wants. Key material never goes into a message.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateKeyPairCallback,
} from "node:crypto";
import type { KeyObject, webcrypto } from "node:crypto";
import { promisify } from "node:util";
import { FatalError } from "../ucspi/errors.ts";

const generateKeyPair = promisify(generateKeyPairCallback);

export const KEY_TYPES = ["ecdsa", "ed25519", "rsa"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** What x509 signs with, and how the key may be used in TLS. */
export interface SigningKey {
  /** For messages: "ECDSA P-256", "Ed25519", "RSA 2048". */
  description: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The same keys for WebCrypto (the private one signs, the public one goes in certificates). */
  crypto: { privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey };
  /** The signature algorithm for certificates and requests this key signs. */
  signing: webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams;
  /** RSA keys may also encipher (TLS 1.2 RSA key exchange): keyUsage keyEncipherment. */
  rsa: boolean;
}

const CURVES: Record<string, { name: string; hash: string }> = {
  prime256v1: { name: "P-256", hash: "SHA-256" },
  secp384r1: { name: "P-384", hash: "SHA-384" },
  secp521r1: { name: "P-521", hash: "SHA-512" },
};

/** A new key of the type (RSA with `rsaBits` bits). */
export async function generateKey(type: KeyType, rsaBits = 2048): Promise<SigningKey> {
  const pair =
    type === "ecdsa"
      ? await generateKeyPair("ec", { namedCurve: "prime256v1" })
      : type === "ed25519"
        ? await generateKeyPair("ed25519")
        : await generateKeyPair("rsa", { modulusLength: rsaBits, publicExponent: 0x10001 });
  return signingKey(pair.privateKey, "new key");
}

/** The key in a PEM file's bytes; `file` names it in errors. */
export function keyFromPem(pem: Buffer, file: string): SigningKey {
  const text = pem.toString("latin1");
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw new FatalError(`key ${file} is encrypted: give an unencrypted key`, 100);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: "pem" });
  } catch {
    throw new FatalError(`no private key in ${file}: want PEM (PKCS#8, SEC1 or PKCS#1)`, 100);
  }
  return signingKey(privateKey, file);
}

/** PKCS#8 PEM of the private key (what the key file holds). */
export function keyPem(key: SigningKey): string {
  return key.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

function signingKey(privateKey: KeyObject, file: string): SigningKey {
  const publicKey = createPublicKey(privateKey);
  const type = privateKey.asymmetricKeyType;
  const usages = { private: ["sign"], public: ["verify"] } as const;
  if (type === "ec") {
    const curve = CURVES[privateKey.asymmetricKeyDetails?.namedCurve ?? ""];
    if (!curve) {
      const name = privateKey.asymmetricKeyDetails?.namedCurve ?? "unknown";
      throw new FatalError(`key ${file} is on curve ${name}: want P-256, P-384 or P-521`, 100);
    }
    const algorithm = { name: "ECDSA", namedCurve: curve.name };
    return {
      description: `ECDSA ${curve.name}`,
      privateKey,
      publicKey,
      crypto: {
        privateKey: privateKey.toCryptoKey(algorithm, false, usages.private),
        publicKey: publicKey.toCryptoKey(algorithm, true, usages.public),
      },
      signing: { name: "ECDSA", hash: curve.hash },
      rsa: false,
    };
  }
  if (type === "ed25519") {
    const algorithm = { name: "Ed25519" };
    return {
      description: "Ed25519",
      privateKey,
      publicKey,
      crypto: {
        privateKey: privateKey.toCryptoKey(algorithm, false, usages.private),
        publicKey: publicKey.toCryptoKey(algorithm, true, usages.public),
      },
      signing: algorithm,
      rsa: false,
    };
  }
  if (type === "rsa") {
    const algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    return {
      description: `RSA ${privateKey.asymmetricKeyDetails?.modulusLength ?? ""}`.trim(),
      privateKey,
      publicKey,
      crypto: {
        privateKey: privateKey.toCryptoKey(algorithm, false, usages.private),
        publicKey: publicKey.toCryptoKey(algorithm, true, usages.public),
      },
      signing: algorithm,
      rsa: true,
    };
  }
  throw new FatalError(`key ${file} is of type ${type ?? "unknown"}: want EC, Ed25519 or RSA`, 100);
}

/** True when both keys are the two halves of one pair (same public key). */
export function sameKey(a: KeyObject, b: KeyObject): boolean {
  const spki = (k: KeyObject) => k.export({ type: "spki", format: "der" });
  const pa = a.type === "private" ? createPublicKey(a) : a;
  const pb = b.type === "private" ? createPublicKey(b) : b;
  return spki(pa).equals(spki(pb));
}
