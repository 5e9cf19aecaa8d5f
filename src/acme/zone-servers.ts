// ACME_DNS_WAIT's servers: those of the zone the record is in, found as lego finds them. The
// record's name and then each parent is asked for its SOA until one has one (the zone's apex),
// then the apex for its NS, then each NS for its addresses, all through ACME_RESOLVER (else the
// system's resolver). The CA may ask any of those servers, and a caching resolver in front of
// them answers "none" until its negative cache expires: only they say when the record is out.
import { Resolver } from "node:dns/promises";

/** The addresses of the zone's name servers, or undefined when they cannot be found this way
 * (a resolver that does not answer SOA or NS, a private zone): the caller asks the resolvers. */
export async function zoneServers(
  record: string,
  resolvers: readonly string[],
): Promise<string[] | undefined> {
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  if (resolvers.length > 0) resolver.setServers([...resolvers]);
  const labels = record.replace(/\.$/, "").split(".");
  let apex: string | undefined;
  for (let i = 0; i < labels.length - 1 && apex === undefined; i++) {
    const name = labels.slice(i).join(".");
    try {
      await resolver.resolveSoa(name);
      apex = name;
    } catch (error) {
      // Not an apex (no SOA there, or no such name): its parent may be. Anything else (a
      // resolver that does not do SOA, one that fails) ends the search.
      const code = (error as { code?: string }).code;
      if (code !== "ENODATA" && code !== "ENOTFOUND") return undefined;
    }
  }
  if (apex === undefined) return undefined;
  const names = await resolver.resolveNs(apex).catch(() => [] as string[]);
  const addresses = await Promise.all(
    names.map(async (ns) => [
      ...(await resolver.resolve4(ns).catch(() => [] as string[])),
      ...(await resolver.resolve6(ns).catch(() => [] as string[])),
    ]),
  );
  const found = [...new Set(addresses.flat())];
  return found.length > 0 ? found : undefined;
}
