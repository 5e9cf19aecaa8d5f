// What tls-everywhere changes on the host, as text: the nftables table and the policy-routing
// commands that install it and take it out again. Nothing here runs anything.
import { portChainText, shellWord } from "./chain.ts";
import { chainPort } from "./options.ts";
import type { EverywhereOptions } from "./options.ts";

export const TABLE = "tls_everywhere";

/** `nft -f` input for the table (inet: IPv4 and IPv6); `comment`, the running tls-everywhere
 * that owns it (owner.ts's tableComment; none for --dry-run's script, run by hand). */
export function nftRuleset(o: EverywhereOptions, comment?: string): string {
  const diverted = o.mark;
  const own = o.mark + 1;
  const ports = `{ ${o.ports.join(", ")} }`;
  const chains = [o.listen, ...o.overrides.map((_, i) => chainPort(o, i))].map(String);
  const families = o.ipv6 ? (["ip", "ip6"] as const) : (["ip"] as const);
  const tproxy = (dports: string, to: number) =>
    families.map(
      (f) =>
        `    meta nfproto ${f === "ip" ? "ipv4" : "ipv6"} fib daddr type local tcp dport ${dports} tproxy ${f} to :${to} meta mark set ${diverted} accept`,
    );
  return [
    // Created, not added to: nft refuses the whole script if the table is there already.
    // The comment goes with the creation: a table's comment is set when it is made.
    `create table inet ${TABLE}${comment === undefined ? "" : ` { comment "${comment}"; }`}`,
    `table inet ${TABLE} {`,
    "  chain pre {",
    "    type filter hook prerouting priority mangle; policy accept;",
    '    iifname "lo" return',
    // An IPv6 link-local address is one per link: the chain's connection to the service from the
    // client's fe80:: address never gets its answer, and the client hangs. Never diverted.
    ...(o.ipv6 ? ["    ip6 daddr fe80::/10 return"] : []),
    // Unreached behind the lo rule (marks come only via lo); issue 12's guard should that rule go.
    `    meta mark ${own} return`,
    `    tcp dport { ${chains.join(", ")} } return`,
    `    tcp flags & (fin | syn | rst | ack) != syn socket transparent 1 meta mark set ${diverted} accept`,
    ...o.overrides.flatMap(({ port }, i) => tproxy(String(port), chainPort(o, i))),
    ...(o.exclude.length > 0 ? [`    tcp dport { ${o.exclude.join(", ")} } return`] : []),
    ...tproxy(ports, o.listen),
    "  }",
    "  chain out {",
    "    type route hook output priority mangle; policy accept;",
    `    meta mark ${own} ct mark set meta mark`,
    `    ct mark ${own} meta mark set ct mark`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The `ip` commands (argv after `ip`) that install the policy routing, in order. */
export function routingCommands(o: EverywhereOptions): string[][] {
  const commands: string[][] = [];
  for (const v of o.ipv6 ? ["-4", "-6"] : ["-4"]) {
    for (const mark of [o.mark, o.mark + 1])
      commands.push([v, "rule", "add", "fwmark", String(mark), "lookup", String(o.table)]);
    const all = v === "-4" ? "0.0.0.0/0" : "::/0";
    commands.push([v, "route", "add", "local", all, "dev", "lo", "table", String(o.table)]);
  }
  return commands;
}

/** The command that takes out what `command` put in. */
export function undoCommand(command: readonly string[]): string[] {
  return command.map((word) => (word === "add" ? "del" : word));
}

/** What --dry-run prints: exactly what would be run, as a script for sh (to read, or to run by
 * hand), with the commands that undo it as comments. */
export function dryRun(o: EverywhereOptions): string {
  return [
    "nft -f - <<'EOF'",
    nftRuleset(o).trimEnd(),
    "EOF",
    ...routingCommands(o).map((c) => `ip ${c.join(" ")}`),
    ...portChains(o),
    "",
    "# Undone on exit by (tls-everywhere --remove --dry-run prints them to run):",
    ...removalCommands(o).map((c) => `# ${c}`),
    "",
  ].join("\n");
}

/** The --port chains, as comments: what each runs (the main chain is always the same). */
function portChains(o: EverywhereOptions): string[] {
  if (o.overrides.length === 0) return [];
  return [
    "",
    "# The --port chains, a tcpserver --transparent each, run as:",
    ...o.overrides.map((_, i) => `# ${portChainText(o, i)}`),
  ];
}

/** What --remove found in --state (host.ts's findLeftovers), as --remove --dry-run prints it. */
export interface RecordedRun {
  /** The tls-everywhere that ended without taking out what it installed. */
  owner: number;
  /** Its chains, still running, which --remove stops. */
  chains: number[];
  /** Processes its record names that are not its chains, which --remove leaves alone. */
  strangers: number[];
  /** The record itself, which --remove removes last. */
  file: string;
}

/** What --remove --dry-run prints: the commands --remove runs, as a script for sh. With a record
 * (`run`, and `o` the options in it), what that run left: its chains stopped, its rules taken
 * out, last first, its record removed; without one, what this command line installs. */
export function removalScript(o: EverywhereOptions, run?: RecordedRun): string {
  if (!run)
    return [
      "# What tls-everywhere installs with these options, taken out, last first:",
      ...removalCommands(o),
      "",
    ].join("\n");
  return [
    `# What tls-everywhere (pid ${run.owner}) left, as its record ${run.file} says: its chain`,
    "# stopped, its rules taken out, last first, its record removed:",
    ...run.chains.map((pid) => `kill -TERM ${pid}`),
    ...run.strangers.map((pid) => `# (pid ${pid}, not its chain, is left alone)`),
    ...removalCommands(o),
    `rm -f -- ${shellWord(run.file)}`,
    "",
  ].join("\n");
}

function removalCommands(o: EverywhereOptions): string[] {
  return [
    `nft delete table inet ${TABLE}`,
    ...routingCommands(o)
      .reverse()
      .map((c) => `ip ${undoCommand(c).join(" ")}`),
  ];
}
