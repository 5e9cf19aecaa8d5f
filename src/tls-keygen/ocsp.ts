// tls-keygen ocsp: asks the OCSP responder that a certificate names (or -u's) about it, and
// keeps the answer beside the chain file (CHAIN.ocsp), where tlsd staples it. An answer that is
// not a good response for this certificate (an HTTP error, another certificate's, a bad
// signature, one out of date, "unknown", which a CA's responder says of a certificate it has
// just issued) leaves the file as it was: exit 111, try again later. One that says the
// certificate is revoked is kept (tlsd then staples nothing, and says why), and is exit 100: a
// good response kept instead would go on telling clients "good". Given a directory (tlsd's
// CERTDIR, certbot's live/), it does so for each NAME/fullchain.pem in it.
import { statSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { writeFileAtomic } from "../files/atomic-write.ts";
import { ocspFileOf, statusText, utcText } from "../tls/ocsp-staple.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import { osPath } from "../ucspi/os-string.ts";
import { CHAIN_FILE, certificateNames } from "../tls/cert-dir.ts";
import type { OcspStatus } from "../ucspi/native.ts";
import { checkOutput, readInput } from "./files.ts";
import type { OcspOptions } from "./options.ts";

const TIMEOUT_MS = 30_000;
/** Responses are a few KiB (more with the responder's certificates). */
const MAX_RESPONSE = 64 * 1024;

/** Fetches and writes the response (for each certificate of a directory); returns the exit
 * code. */
export async function fetchOcsp(
  options: OcspOptions,
  log: (line: string) => void,
): Promise<number> {
  const chains = certificatesIn(options.chainFile);
  if (!chains) {
    await fetchFor(options.chainFile, options, log);
    return 0;
  }
  // tlsd's CERTDIR (certbot's live/): each NAME/fullchain.pem, one failure not stopping the
  // others; the worst of them is the status: a revocation first, then what a retry may mend.
  let status = 0;
  for (const chain of chains) {
    try {
      await fetchFor(chain, options, log, true);
    } catch (error) {
      if (!(error instanceof FatalError)) throw error;
      log(`tls-keygen: warning: ${error.message}\n`);
      if (error.exitCode === 100 || status === 0) status = error.exitCode;
    }
  }
  return status;
}

/** The chain files of a CERTDIR (NAME/fullchain.pem, as tlsd reads it), or undefined when
 * `path` is not a directory. */
function certificatesIn(path: string): string[] | undefined {
  let entries: string[];
  try {
    if (!statSync(osPath(path)).isDirectory()) return undefined;
    entries = certificateNames(path);
  } catch {
    return undefined; // what reading it as a chain file says
  }
  return entries
    .map((name) => join(path, name, CHAIN_FILE))
    .filter((chain) => {
      try {
        return statSync(osPath(chain)).isFile();
      } catch {
        return false; // not a certificate directory
      }
    });
}

/** One chain file's response. `skipUnnamed`: a certificate that names no responder (and no
 * -u) is passed over, said with -v only: in a directory, a CA without OCSP is no failure. */
async function fetchFor(
  chainFile: string,
  options: OcspOptions,
  log: (line: string) => void,
  skipUnnamed = false,
): Promise<void> {
  const file = ocspFileOf(chainFile);
  const chain = readInput(chainFile, "certificate chain");
  checkOutput(file, true);
  let request: { der: Buffer; url: string };
  try {
    request = native().ocspRequest(chain);
  } catch (error) {
    throw new FatalError(`unable to ask about ${chainFile}: ${(error as Error).message}`, 100);
  }
  const url = options.url ?? request.url;
  if (!url && skipUnnamed) {
    if (options.verbose)
      log(`tls-keygen: info: passed over ${chainFile}: its certificate names no OCSP responder\n`);
    return;
  }
  if (!url)
    throw new FatalError(
      `unable to ask about ${chainFile}: its certificate names no OCSP responder (-u names one)`,
      100,
    );
  const der = await ask(url, request.der);
  let read: OcspStatus;
  try {
    read = native().ocspCheck(der, chain);
  } catch (error) {
    throw new FatalError(
      `the answer of ${url} is not kept: ${(error as Error).message} (${file} left as it is)`,
      111,
    );
  }
  if (read.status === "unknown")
    throw new FatalError(
      `the answer of ${url} is not kept: ${statusText(read)} (${file} left as it is)`,
      111,
    );
  writeFileAtomic(file, der, { mode: 0o644, overwrite: true });
  if (read.status === "revoked")
    throw new FatalError(
      `${url} answered for ${chainFile}: ${statusText(read)}. Kept in ${file}: tlsd staples none`,
      100,
    );
  if (options.verbose)
    log(`tls-keygen: info: wrote ${file}: good until ${utcText(read.nextUpdate)}\n`);
}

/** POSTs the request (RFC 6960 appendix A) and reads the answer, bounded in time and size.
 * node:http rather than fetch, whose list of "bad ports" (25, 110, ...) would refuse some. */
function ask(url: string, body: Buffer): Promise<Buffer> {
  const failed = (why: string) => new FatalError(`unable to ask ${url}: ${why}`, 111);
  const target = new URL(url);
  const send = target.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(target, {
      method: "POST",
      headers: { "content-type": "application/ocsp-request", "content-length": body.length },
      timeout: TIMEOUT_MS,
    });
    req.on("timeout", () => req.destroy(failed(`no answer within ${TIMEOUT_MS / 1000} s`)));
    req.on("error", (error) =>
      reject(error instanceof FatalError ? error : failed(causeText(error))),
    );
    req.on("response", (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        req.destroy(failed(`it answered HTTP ${response.statusCode ?? "?"}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE) req.destroy(failed("its answer is too long"));
        else chunks.push(chunk);
      });
      response.on("end", () => resolve(Buffer.concat(chunks)));
      response.on("error", (error) =>
        reject(error instanceof FatalError ? error : failed(causeText(error))),
      );
    });
    req.end(body);
  });
}
