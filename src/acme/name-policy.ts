// Which names tlsd may order a certificate for (jfe's TODO: "learning names from the
// environment means learning names from attackers"). Three policies, each on when configured,
// all of which must agree:
// - ACME_NAMES: the name is on the list (exactly, or one label below a `*.parent` entry);
// - ACME_RESOLVE: the name resolves (A or AAAA) to an address this host takes connections on
//   (the one the client connected to, or any of its interfaces): nobody can make us order for a
//   name that points elsewhere (jfe's step 5);
// - ACME_ASK: a program of the site's own says yes (exit 0), run with the name as its argument
//   and in ACME_NAME, as Caddy's on_demand_tls "ask", UCSPI-style.
// Verdicts of the last two are kept ACME_POLICY_TTL seconds (yes and no alike), so a client
// that repeats a name costs one lookup; the rate limit (ledger.ts) still bounds the orders.
import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { unmapIPv4 } from "../net/ip.ts";
import type { AcmeConfig } from "./config.ts";
import { sniMatches } from "../tls/sni-pattern.ts";
import { endText, runSiteProgram } from "./site-program.ts";

/** How many verdicts are kept; the oldest goes first. */
const MAX_VERDICTS = 4096;
/** How long an ask program may take before its answer is "no". */
const ASK_TIMEOUT_MS = 5_000;

export type PolicyConfig = Pick<
  AcmeConfig,
  "names" | "resolve" | "resolvers" | "ask" | "policyTtlMs" | "searchPath"
>;

export class NamePolicy {
  private readonly config: PolicyConfig;
  private readonly log: (line: string) => void;
  private readonly verdicts = new Map<string, { allowed: Promise<boolean>; until: number }>();

  constructor(config: PolicyConfig, log: (line: string) => void) {
    this.config = config;
    this.log = log;
  }

  /** Whether `name` may be ordered; `localIp` is the address its client connected to. */
  allows(name: string, localIp?: string): Promise<boolean> {
    const { names, resolve, ask } = this.config;
    if (names.length > 0 && !nameAllowed(names, name)) return Promise.resolve(false);
    // An address's certificate is ordered only where ACME_NAMES names it: the one a client
    // connected to is this host's by construction, and ACME_RESOLVE has nothing to check.
    if (isIP(name) && names.length === 0) return Promise.resolve(false);
    if (!resolve && ask === undefined) return Promise.resolve(true);
    const key = resolve ? `${name} ${localIp ?? ""}` : name;
    const now = Date.now();
    const kept = this.verdicts.get(key);
    if (kept && now < kept.until) return kept.allowed;
    const allowed = this.decide(name, localIp);
    this.verdicts.delete(key);
    this.verdicts.set(key, { allowed, until: now + this.config.policyTtlMs });
    if (this.verdicts.size > MAX_VERDICTS) {
      const oldest = this.verdicts.keys().next().value;
      if (oldest !== undefined) this.verdicts.delete(oldest);
    }
    return allowed;
  }

  private async decide(name: string, localIp: string | undefined): Promise<boolean> {
    // A wildcard certificate's own name (its renewal by tls-keygen renew) resolves nowhere;
    // its clients' names were checked when they came. An address is its own.
    const named = !name.startsWith("*.") && !isIP(name);
    if (this.config.resolve && named && !(await this.pointsHere(name, localIp))) return false;
    if (this.config.ask !== undefined && !(await this.asked(this.config.ask, name))) return false;
    return true;
  }

  /** Whether one of the name's addresses is one this host takes connections on. */
  private async pointsHere(name: string, localIp: string | undefined): Promise<boolean> {
    const resolver = new Resolver({ timeout: 3_000, tries: 2 });
    if (this.config.resolvers.length > 0) resolver.setServers(this.config.resolvers);
    const found = await Promise.all([
      resolver.resolve4(name).catch(() => [] as string[]),
      resolver.resolve6(name).catch(() => [] as string[]),
    ]);
    const addresses = found.flat();
    const ours = localAddresses(localIp);
    const here = addresses.find((a) => ours.has(a));
    if (here === undefined)
      this.log(
        `tlsd: warning: acme: ${name}: not ordered: ACME_RESOLVE: it resolves to ${addresses.join(" ") || "nothing"}, not to this host\n`,
      );
    return here !== undefined;
  }

  /** The ask program's answer: exit 0 is yes; anything else, or no answer in time, is no. */
  private async asked(program: string, name: string): Promise<boolean> {
    const end = await runSiteProgram(program, name, this.config.searchPath, ASK_TIMEOUT_MS);
    if (end.ran && end.code === 0) return true;
    const why = end.ran && !end.signal ? `said no (${endText(end)})` : endText(end);
    this.log(`tlsd: warning: acme: ${name}: not ordered: ACME_ASK ${why}\n`);
    return false;
  }
}

/** The addresses this host takes connections on: its interfaces', and the connection's own. */
function localAddresses(localIp: string | undefined): Set<string> {
  const set = new Set<string>();
  for (const list of Object.values(networkInterfaces()))
    for (const i of list ?? []) set.add(i.address.split("%")[0] ?? i.address);
  if (localIp && isIP(localIp)) set.add(unmapIPv4(localIp));
  return set;
}

/** A name on the list: exactly, or one label below a `*.parent` entry. */
export function nameAllowed(patterns: readonly string[], name: string): boolean {
  // An address only as itself: `*.0.0.1` is no pattern for 127.0.0.1.
  if (isIP(name)) return patterns.includes(name);
  return patterns.some((pattern) => sniMatches(pattern, name));
}
