// Which names tlsd may order a certificate for, and how often: jfe learned its names from
// clients, so anyone could make it order (and burn the account's rate limits) for names they
// point at the server. Here a name must be on the list (and orders are rationed: ledger.ts).
import { sniMatches } from "../tls/sni-pattern.ts";

/** A name on the list: exactly, or one label below a `*.parent` entry. */
export function nameAllowed(patterns: readonly string[], name: string): boolean {
  return patterns.some((pattern) => sniMatches(pattern, name));
}
