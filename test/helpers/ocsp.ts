// What openssl ocsp needs to answer as a CA's responder does: an index (one line per
// certificate, by serial: valid or revoked) and the certificate's serial.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import type { Pair, TestPki } from "./certs.ts";

/** openssl ca's index with one certificate, valid (V) or revoked (R) since yesterday. */
export function writeOcspIndex(file: string, serial: string, status: "V" | "R"): void {
  const stamp = (days: number) =>
    new Date(Date.now() + days * 86_400_000)
      .toISOString()
      .replace(/[-:T]/g, "")
      .slice(2, 14)
      .concat("Z");
  const revoked = status === "R" ? stamp(-1) : "";
  writeFileSync(file, `${status}\t${stamp(2)}\t${revoked}\t${serial}\tunknown\t/CN=localhost\n`);
}

/** A leaf as a server serves it: its chain file (the leaf, then the CA that issued it, whose
 * name and key identify the leaf in a response) and its key. */
export function chained(pki: TestPki, leaf: Pair): Pair {
  const chain = leaf.cert.replace(/\.pem$/, ".chain.pem");
  writeFileSync(chain, Buffer.concat([readFileSync(leaf.cert), readFileSync(pki.ca.cert)]));
  return { cert: chain, key: leaf.key };
}

/** A certificate's serial in hex, as the index names it. */
export function serialOf(certFile: string): string {
  return execFileSync("openssl", ["x509", "-noout", "-serial", "-in", certFile], {
    encoding: "latin1",
  })
    .trim()
    .replace(/^serial=/, "");
}
