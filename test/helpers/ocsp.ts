// What openssl ocsp needs to answer as a CA's responder does: an index (one line per
// certificate, by serial: valid or revoked) and the certificate's serial; and openssl ocsp
// answering on a port, as a CA's responder does.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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

/** A leaf for localhost whose authorityInfoAccess names a responder at `url` (none: ""), in
 * its chain file; and its serial. */
export function leafChain(
  pki: TestPki,
  name: string,
  url: string,
): { chain: string; key: string; serial: string } {
  const aia = url ? `authorityInfoAccess=OCSP;URI:${url}\n` : "";
  const leaf = pki.server(name, ["localhost"], aia);
  return { chain: chained(pki, leaf).cert, key: leaf.key, serial: serialOf(leaf.cert) };
}

/** openssl ocsp as a CA runs it: answers on `port` from an index where `serial` is valid or
 * revoked; stop() ends it. */
export async function ocspResponder(
  pki: TestPki,
  port: number,
  serial: string,
  status: "V" | "R",
): Promise<{ stop: () => void }> {
  const index = join(pki.dir, `index-${port}.txt`);
  writeOcspIndex(index, serial, status);
  const child = spawn(
    "openssl",
    [
      ...["ocsp", "-index", index, "-port", String(port), "-CA", pki.ca.cert],
      ...["-rsigner", pki.ca.cert, "-rkey", pki.ca.key, "-ndays", "1", "-nrequest", "20"],
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  // It says so once it listens; a connection made to find out would hold it (one at a time).
  await new Promise<void>((resolve, reject) => {
    let said = "";
    const timer = setTimeout(
      () => reject(new Error(`openssl ocsp did not listen: ${said}`)),
      10_000,
    );
    child.stderr.setEncoding("latin1");
    child.stderr.on("data", (s: string) => {
      said += s;
      if (/waiting for OCSP client connections/.test(said)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { stop: () => child.kill() };
}

/** openssl ocsp's answer for `leaf` (its chain file), the certificate valid or revoked: the
 * request made as a client makes it, answered from an index as a CA's responder does. */
export function opensslResponse(pki: TestPki, leaf: Pair, status: "valid" | "revoked"): Buffer {
  const dir = pki.dir;
  const serial = serialOf(leaf.cert);
  const index = join(dir, `${serial}.index`);
  writeOcspIndex(index, serial, status === "revoked" ? "R" : "V");
  const request = join(dir, `${serial}.req`);
  const out = join(dir, `${serial}-${status}.der`);
  const ca = pki.ca.cert;
  const quiet = { stdio: ["ignore", "ignore", "pipe"] as ("ignore" | "pipe")[] };
  execFileSync(
    "openssl",
    ["ocsp", "-issuer", ca, "-cert", leaf.cert, "-reqout", request, "-no_nonce"],
    quiet,
  );
  execFileSync(
    "openssl",
    [
      ...["ocsp", "-index", index, "-CA", ca, "-rsigner", ca, "-rkey", pki.ca.key],
      ...["-reqin", request, "-respout", out, "-ndays", "1", "-resp_no_certs"],
    ],
    quiet,
  );
  return readFileSync(out);
}
