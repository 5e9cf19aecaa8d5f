// OCSP stapling: the response for a certificate is the file beside its chain file, named as it
// is with ".ocsp" after (haproxy's convention; `openssl ocsp -respout` writes one), in DER.
// What may be stapled is the native engine's to say (ocspCheck): a response that may not is
// left out, with one line saying why, and the certificate serves without it.
import { readFileSync } from "node:fs";
import { native } from "../ucspi/native.ts";
import type { OcspStatus } from "../ucspi/native.ts";
import { causeText } from "../ucspi/errors.ts";
import { osPath } from "../ucspi/os-string.ts";

export function ocspFileOf(certFile: string): string {
  return `${certFile}.ocsp`;
}

export interface Staple {
  der: Buffer;
  /** Its nextUpdate, seconds since the epoch: none is stapled after. */
  until: number;
}

/** A response file read: what to staple, or why none (`revoked`: it says so). */
export interface StapleRead {
  staple?: Staple;
  problem?: string;
  revoked?: boolean;
}

/** The response in `file` to staple with `chain` (PEM, the leaf first): none when there is no
 * such file, or when it may not be stapled (then `problem` says why). */
export function stapleFrom(file: string, chain: Buffer): StapleRead {
  let der: Buffer;
  try {
    der = readFileSync(osPath(file));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    return { problem: `unable to read OCSP response ${file}: ${causeText(error)}` };
  }
  let read: OcspStatus;
  try {
    read = native().ocspCheck(der, chain);
  } catch (error) {
    return { problem: `OCSP response ${file} is not stapled: ${(error as Error).message}` };
  }
  if (read.status !== "good")
    return {
      problem: `OCSP response ${file} is not stapled: ${statusText(read)}`,
      revoked: read.status === "revoked",
    };
  return { staple: { der, until: read.nextUpdate } };
}

/** What a "must staple" certificate (its TLS Feature extension asks for status_request, RFC
 * 7633) served without its response costs. */
export const MUST_STAPLE =
  "its certificate must be served with one (TLS Feature status_request): clients that enforce that refuse the handshake";

/** The line for a "must staple" certificate that has no response to staple. */
export function mustStapleUnmet(certFile: string, file: string): string {
  return `certificate ${certFile} must be served with its OCSP response (TLS Feature status_request), and none is stapled (${file}): clients that enforce that refuse the handshake`;
}

/** What a response that is not "good" says, in our words. */
export function statusText(read: OcspStatus): string {
  if (read.status === "revoked")
    return `it says the certificate is revoked (since ${utcText(read.revokedAt ?? 0)})`;
  return `it says the responder does not know the certificate`;
}

/** "2026-12-06 23:00:00 UTC" for seconds since the epoch. */
export function utcText(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}
