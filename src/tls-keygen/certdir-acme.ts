// What renew and revoke share: tlsd's ACME settings for the CERTDIR they are given, taken on
// as the CERTDIR's owner. Run as root (cron's, a timer's), they write as that user, the one tlsd
// serves the directory as: a key of root's, mode 0600, would end every handshake for its name.
import { statSync } from "node:fs";
import { acmeConfig } from "../acme/config.ts";
import type { AcmeConfig } from "../acme/config.ts";
import type { Env } from "../ucspi/env.ts";
import { toBytes } from "../ucspi/env.ts";
import { FatalError } from "../ucspi/errors.ts";
import { osPath } from "../ucspi/os-string.ts";
import type { DropPrivileges } from "../ucspi/privileges.ts";

/** tlsd's ACME configuration for `certDir`, from its ACME_* settings; undefined without
 * ACME_DIRECTORY, exit 100 with settings tlsd would refuse. */
export function certDirConfig(certDir: string, env: Readonly<Env>): AcmeConfig | undefined {
  return env["ACME_DIRECTORY"] ? acmeConfig({ ...env, CERTDIR: toBytes(certDir) }) : undefined;
}

/** OnDemand's and the issuer's lines, which are tlsd's, in tls-keygen's name. */
export function inOurName(log: (line: string) => void): (line: string) => void {
  return (line) => log(line.replace(/^tlsd: /, "tls-keygen: "));
}

/** The ACME configuration of `certDir`, its owner's ids taken on (said with `verbose`); exit
 * 100 without ACME_DIRECTORY or with settings tlsd would refuse. */
export function certDirAcme(
  command: "renew" | "revoke",
  certDir: string,
  env: Readonly<Env>,
  log: (line: string) => void,
  drop: DropPrivileges,
  verbose: boolean,
): AcmeConfig {
  const config = certDirConfig(certDir, env);
  if (!config)
    throw new FatalError(
      `${command} needs ACME_DIRECTORY and the other ACME_* settings of the tlsd that serves the CERTDIR`,
      100,
    );
  const owner = ownerOf(config.cacheDir);
  if (owner && owner.uid !== 0) {
    drop(owner);
    if (verbose)
      log(
        `tls-keygen: info: ${command === "renew" ? "renewing" : "revoking"} as uid ${owner.uid}, gid ${owner.gid}: CERTDIR's owner\n`,
      );
  }
  return config;
}

function ownerOf(dir: string): { uid: number; gid: number } | undefined {
  try {
    const { uid, gid } = statSync(osPath(dir));
    return { uid, gid };
  } catch {
    return undefined; // said when it is read
  }
}
