// tls-keygen revoke: the certificate of one name in tlsd's CERTDIR, revoked at the ACME CA that
// issued it (RFC 8555 section 7.6) and taken out of the CERTDIR, so that every tlsd serving it
// orders a new one, with a new key, for the next client of that name. For a key that leaked,
// a name given up, a certificate that must not be served any more.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { withdrawCertificate } from "../acme/cert-versions.ts";
import { Issuer } from "../acme/issuer.ts";
import { isIP } from "node:net";
import { canonicalAddress } from "../net/ip.ts";
import { isSniPattern } from "../tls/sni-pattern.ts";
import { CHAIN_FILE, KEY_FILE } from "../tls/cert-dir.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { osPath } from "../ucspi/os-string.ts";
import type { DropPrivileges } from "../ucspi/privileges.ts";
import { certDirAcme, inOurName } from "./certdir-acme.ts";
import { REVOCATION_REASONS } from "./options.ts";
import type { RevokeOptions } from "./options.ts";

/** Revokes and withdraws; 0, or 111 when the certificate cannot be read or the CA refused
 * (nothing is withdrawn then), 100 for a configuration tlsd would refuse. */
export async function revokeCertificate(
  options: RevokeOptions,
  env: Readonly<Env>,
  log: (line: string) => void,
  drop: DropPrivileges,
): Promise<number> {
  const config = certDirAcme("revoke", options.certDir, env, log, drop, false);
  const name = canonicalAddress(options.name) ?? options.name.toLowerCase();
  // A CERTDIR entry's name, never a path out of it.
  if (!isIP(name) && !isSniPattern(name))
    throw new FatalError(`not a host name, *.name or IP address: '${options.name}'`, 100);
  const dir = join(config.cacheDir, name);
  let chain: string;
  let leaf: X509Certificate;
  try {
    chain = readFileSync(osPath(join(dir, CHAIN_FILE)), "latin1");
    leaf = new X509Certificate(chain);
  } catch (error) {
    throw new FatalError(
      `no certificate for ${name} in ${options.certDir}: ${causeText(error)}`,
      111,
    );
  }
  // keyCompromise is proved with the key itself; read now, before anything is asked.
  let key: Buffer | undefined;
  if (options.reason === "keyCompromise") {
    try {
      key = readFileSync(osPath(join(dir, KEY_FILE)));
    } catch (error) {
      throw new FatalError(`unable to read ${name}'s key: ${causeText(error)}`, 111);
    }
  }
  try {
    await new Issuer(config, inOurName(log)).revoke(
      chain,
      REVOCATION_REASONS[options.reason] ?? 0,
      key,
    );
  } catch (error) {
    throw new FatalError(`the CA did not revoke ${name}'s certificate: ${causeText(error)}`, 111);
  }
  withdrawCertificate(config.cacheDir, name);
  log(
    `tls-keygen: info: acme: ${name}: certificate ${leaf.serialNumber.toLowerCase()} revoked (${options.reason}) and taken out of ${options.certDir}: the next client orders a new one\n`,
  );
  return 0;
}
