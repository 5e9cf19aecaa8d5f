// Certificates on demand under tls-everywhere: the CA's validator must reach tlsd (or, for
// http-01, acme-challenge) through the main chain, whatever listens on the port it comes to
// (dns-01's comes to no port here).
// Without these routes, tcpforward --if-plain sends it to the service on that port: on 443 a
// reset where nothing listens, a TLS service's own certificate, and on 80 the web server's 404.
import { join } from "node:path";
import { challengeNamed } from "../acme/config.ts";
import type { AcmeChallenge } from "../acme/config.ts";
import type { Env } from "../ucspi/env.ts";
import type { EverywhereOptions, PortList } from "./options.ts";

/** How tlsd's orders are validated, as tlsd reads ACME_CHALLENGE; undefined without
 * ACME_DIRECTORY (no orders). A value tlsd refuses is tlsd's to say. */
export function acmeChallenge(env: Env): AcmeChallenge | undefined {
  if (env["ACME_DIRECTORY"] === undefined) return undefined;
  return challengeNamed(env) ?? "tls-alpn-01";
}

/** The port the CA's validator connects to (RFC 8737 section 3, RFC 8555 section 8.3);
 * dns-01's validator asks the zone's servers, no port of this host. */
const VALIDATED_ON = { "tls-alpn-01": 443, "http-01": 80, "dns-01": undefined } as const;

/** tls-sniff's routes, before the others, that take the validator to what answers it: a
 * ClientHello offering ALPN acme-tls/1 to tlsd (which answers it itself, on any port); an
 * HTTP request to acme-challenge, which answers the tokens tlsd wrote and passes every other
 * request, untouched, to the service the client asked for. */
export function acmeRoutes(challenge: ReturnType<typeof acmeChallenge>, bin: string): string[] {
  if (challenge === "tls-alpn-01")
    return ["--alpn", "acme-tls/1", "{", join(bin, "tlsd"), "tcpforward", "}"];
  if (challenge === "http-01")
    return ["--http", "{", join(bin, "acme-challenge"), "tcpforward", "}"];
  return [];
}

function inList(list: PortList, port: number): boolean {
  return list.some((item) => {
    const [low = 0, high = low] = item.split("-").map(Number);
    return port >= low && port <= high;
  });
}

/** A warning when the port the CA validates on reaches no chain (left out of --ports, or
 * excluded): the orders then fail, unless what listens there answers them itself. */
export function validationPortWarning(o: EverywhereOptions, env: Env): string | undefined {
  const challenge = acmeChallenge(env);
  if (challenge === undefined) return undefined;
  const port = VALIDATED_ON[challenge];
  if (port === undefined) return undefined;
  if (o.overrides.some((chain) => chain.port === port)) return undefined;
  if (inList(o.ports, port) && !inList(o.exclude, port)) return undefined;
  const answerer = challenge === "http-01" ? "acme-challenge" : "tlsd";
  return `port ${port} is not diverted, and the CA validates ${challenge} there: orders fail unless what listens on ${port} answers them (${answerer} with this CERTDIR)`;
}
