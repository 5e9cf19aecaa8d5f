// tls-keygen renew: renews the certificates of tlsd's CERTDIR that are due, from its ACME CA,
// as tlsd does when a handshake finds one due (the CA's renewal window asked first, the same
// name policy, rate limit and lock, so that it and the tlsds serving the CERTDIR never order a
// name twice). For a timer: a certificate that no client asks for while it is due would
// otherwise expire, and a tlsd per connection (djb's tcpserver) renews only while its session
// lasts. The settings are tlsd's ACME_* variables; CERTDIR is the argument.
import { nameAllowed } from "../acme/name-policy.ts";
import { OnDemand } from "../acme/on-demand.ts";
import type { Renewal } from "../acme/on-demand.ts";
import { certificateNames } from "../tls/cert-dir.ts";
import type { Env } from "../ucspi/env.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import type { DropPrivileges } from "../ucspi/privileges.ts";
import type { RenewOptions } from "./options.ts";
import { certDirAcme, inOurName } from "./certdir-acme.ts";

/** Renews what is due; 0 when nothing failed, 111 when an order failed (the timer's next run
 * tries again), 100 for a configuration tlsd would refuse. */
export async function renewCertDir(
  options: RenewOptions,
  env: Readonly<Env>,
  log: (line: string) => void,
  drop: DropPrivileges,
): Promise<number> {
  const config = certDirAcme("renew", options.certDir, env, log, drop, options.verbose);
  let names: string[];
  try {
    names = certificateNames(config.cacheDir);
  } catch (error) {
    throw new FatalError(`unable to read CERTDIR ${options.certDir}: ${causeText(error)}`, 111);
  }
  // OnDemand's lines are tlsd's; here they are ours.
  const acme = new OnDemand(config, inOurName(log));
  const outcomes = await acme.renewDue(names);
  let status = 0;
  for (const [name, outcome] of outcomes) {
    if (outcome === "failed") status = 111;
    // ACME_RESOLVE and ACME_ASK say why they refuse; the list does not.
    if (outcome === "refused" && !nameAllowed(config.names, name) && config.names.length > 0)
      log(`tls-keygen: warning: acme: ${name}: not renewed: not on ACME_NAMES\n`);
    const line = lineFor(name, outcome, acme.renewalTime(name));
    if (line && options.verbose) log(line);
  }
  return status;
}

/** -v's line for a certificate that was not due (an order says how it went itself). */
function lineFor(name: string, outcome: Renewal, renewAt: number): string | undefined {
  if (outcome === "not due" && Number.isFinite(renewAt))
    return `tls-keygen: info: acme: ${name}: not due before ${new Date(renewAt).toISOString()}\n`;
  if (outcome === "not due") return `tls-keygen: info: acme: ${name}: not a certificate\n`;
  return undefined;
}
