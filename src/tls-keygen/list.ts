// tls-keygen list: what tlsd's CERTDIR holds, a line per certificate on stdout (certbot's
// `certificates`): its end, when it is renewed (with the ACME_* settings of the tlsd that
// serves it: the CA's window where it gave one), its serial, its issuer and its names, and
// whether it is being ordered now or its last order failed.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ledger, mtimeOf } from "../acme/ledger.ts";
import { OnDemand } from "../acme/on-demand.ts";
import { CHAIN_FILE, certificateNames } from "../tls/cert-dir.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { osPath } from "../ucspi/os-string.ts";
import { certDirConfig } from "./certdir-acme.ts";
import type { ListOptions } from "./options.ts";

/** Writes the lines; 0, or 111 when a certificate (or the CERTDIR) cannot be read. */
export function listCertDir(
  options: ListOptions,
  env: Readonly<Env>,
  out: (line: string) => void,
  log: (line: string) => void,
): number {
  let names: string[];
  try {
    names = certificateNames(options.certDir);
  } catch (error) {
    throw new FatalError(`unable to read CERTDIR ${options.certDir}: ${causeText(error)}`, 111);
  }
  // The renewal times are tlsd's, which its ACME_* settings decide; without them, none.
  const config = certDirConfig(options.certDir, env);
  const acme = config ? new OnDemand(config, () => undefined) : undefined;
  const ledger = new Ledger(join(options.certDir, ".acme"), Infinity);
  let status = 0;
  for (const name of names) {
    const file = join(options.certDir, name, CHAIN_FILE);
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(readFileSync(osPath(file)));
    } catch (error) {
      log(`tls-keygen: warning: ${name}: unable to read ${file}: ${causeText(error)}\n`);
      status = 111;
      continue;
    }
    const renewAt = acme?.renewalTime(name);
    const issuer = /(?:^|\n)CN=([^\n]*)/.exec(leaf.issuer)?.[1] ?? leaf.issuer.replace(/\n/g, ", ");
    const parts = [
      `expires ${utc(Date.parse(leaf.validTo))}`,
      ...(renewAt !== undefined && Number.isFinite(renewAt)
        ? [`renewed from ${utc(renewAt)}`]
        : []),
      `serial ${leaf.serialNumber.toLowerCase()}`,
      `issued by ${issuer}`,
      `for ${leaf.subjectAltName ?? "(no subject alternative names)"}`,
    ];
    if (ledger.ordering(name)) parts.push("being ordered now");
    const failed = ledger.failure(name, mtimeOf(file));
    if (failed) parts.push(`its last order failed: ${failed}`);
    out(`${name}: ${parts.join(", ")}\n`);
  }
  return status;
}

function utc(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
