// What tlsd says at start-up about a configuration that will serve, but badly: a certificate
// out of its validity, one that does not cover the name it is set for, a key that others can
// read. One line each; nothing here stops the server.
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import type { StoreConfig } from "./cert-store.ts";
import { osPath } from "../ucspi/os-string.ts";

export function configWarnings(config: StoreConfig, now: Date): string[] {
  const out: string[] = [];
  const pairs = [
    ...(config.fallback ? [[undefined, config.fallback] as const] : []),
    ...config.named.entries(),
  ];
  for (const [name, pair] of pairs) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(readFileSync(osPath(pair.cert)));
    } catch {
      continue; // Loading it says what is wrong.
    }
    if (cert.validToDate < now) out.push(`certificate ${pair.cert} expired on ${cert.validTo}`);
    if (cert.validFromDate > now)
      out.push(`certificate ${pair.cert} is not valid before ${cert.validFrom}`);
    // A wildcard name is covered when a name below it is.
    const probe = name?.startsWith("*.") ? `x${name.slice(1)}` : name;
    if (name && probe && !cert.checkHost(probe))
      out.push(`certificate ${pair.cert} is not for ${name} (CERTFILE:${name})`);
    const readable = readableByOthers(pair.key);
    if (readable) out.push(`key ${pair.key} ${readable}`);
  }
  // Whoever reads the ticket keys can decrypt every session resumed under them.
  const tickets = config.ticketFile && readableByOthers(config.ticketFile);
  if (tickets) out.push(`ticket keys ${config.ticketFile} ${tickets}`);
  return out;
}

/** "can be read by anyone (mode 644): chmod 600" for a secret others may read; undefined
 * when none may, or when the file cannot be looked at (loading it says what is wrong). */
function readableByOthers(file: string): string | undefined {
  try {
    const mode = statSync(osPath(file)).mode;
    if (mode & 0o044)
      return `can be read by ${mode & 0o004 ? "anyone" : "its group"} (mode ${(mode & 0o777).toString(8)}): chmod 600`;
  } catch {
    // As above.
  }
  return undefined;
}
