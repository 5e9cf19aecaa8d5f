// ACME_DNS_WAIT's servers: those of the zone the record is in, found as lego finds them. A
// CNAME at the record's name (the record delegated to another zone, as acme-dns setups do) is
// followed first, as the CA follows it; then that name and each parent is asked for its SOA
// until one has one (the zone's apex), then the apex for its NS, then each NS for its
// addresses, all through ACME_RESOLVER (else the system's resolver). The CA may ask any of
// those servers, and a caching resolver in front of them answers "none" until its negative
// cache expires: only they say when the record is out.
import { Resolver } from "node:dns/promises";

/** How many CNAMEs are followed from the record's name: a loop ends there. */
const MAX_CNAMES = 8;

/** Where the record is to be looked for: the name it is at (after CNAMEs) and the addresses
 * of its zone's name servers; undefined when those cannot be found this way (a resolver that
 * does not answer SOA or NS, a private zone): the caller asks the resolvers. */
export async function zoneServers(
  record: string,
  resolvers: readonly string[],
): Promise<{ name: string; servers: string[] } | undefined> {
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  if (resolvers.length > 0) resolver.setServers([...resolvers]);
  let name = record.replace(/\.$/, "");
  for (let i = 0; i < MAX_CNAMES; i++) {
    const [target] = await resolver.resolveCname(name).catch(() => [] as string[]);
    if (target === undefined) break;
    name = target.replace(/\.$/, "");
  }
  const labels = name.split(".");
  let apex: string | undefined;
  for (let i = 0; i < labels.length - 1 && apex === undefined; i++) {
    const candidate = labels.slice(i).join(".");
    try {
      await resolver.resolveSoa(candidate);
      apex = candidate;
    } catch (error) {
      // Not an apex (no SOA there, or no such name): its parent may be. Anything else (a
      // resolver that does not do SOA, one that fails) ends the search.
      const code = (error as { code?: string }).code;
      if (code !== "ENODATA" && code !== "ENOTFOUND") return undefined;
    }
  }
  if (apex === undefined) return undefined;
  const nameServers = await resolver.resolveNs(apex).catch(() => [] as string[]);
  const addresses = await Promise.all(
    nameServers.map(async (ns) => [
      ...(await resolver.resolve4(ns).catch(() => [] as string[])),
      ...(await resolver.resolve6(ns).catch(() => [] as string[])),
    ]),
  );
  const servers = [...new Set(addresses.flat())];
  return servers.length > 0 ? { name, servers } : undefined;
}
