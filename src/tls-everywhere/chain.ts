// What a chain runs: the admin's words, each `tcpforward` that goes where the client asked
// made transparent and marked. One that names its own destination is run as written.
import { parseForwardArgs } from "../tcpforward/options.ts";
import { chainPort } from "./options.ts";
import type { EverywhereOptions } from "./options.ts";

/** The words of the tcpforward stage at chain[at]: up to the `}` that ends the block it is in
 * (a tls-sniff route, another tcpforward's --if-plain), else to the end. */
function stageArgs(chain: readonly string[], at: number): readonly string[] {
  let depth = 0;
  for (let i = at + 1; i < chain.length; i++) {
    if (chain[i] === "{") depth++;
    else if (chain[i] === "}" && depth-- === 0) return chain.slice(at + 1, i);
  }
  return chain.slice(at + 1);
}

/** Whether a tcpforward's own arguments name where it goes (host port, or a UNIX socket). One
 * that tcpforward refuses does not: it says why when the chain starts. */
function namesDestination(args: readonly string[]): boolean {
  try {
    const o = parseForwardArgs(args);
    return o.host !== undefined || o.socket !== undefined;
  } catch {
    return false;
  }
}

/** `chain` as it runs, `tcpforward` its path. Only a tcpforward to the address the client asked
 * for (this host's: TPROXY diverts only those) gets --transparent and the chain's mark, which
 * routes the service's replies back to it. Another host is never reached with that mark (its
 * route is the local one) and would answer the client's address directly; a daemon named on
 * this host is reached through lo, which is never diverted, so it needs neither; a UNIX socket
 * takes neither. */
export function chainCommand(chain: readonly string[], tcpforward: string, mark: number): string[] {
  return chain.flatMap((word, i) => {
    if (word !== "tcpforward") return [word];
    if (namesDestination(stageArgs(chain, i))) return [tcpforward];
    return [tcpforward, "--transparent", "--mark", String(mark)];
  });
}

/** What --port chain `index` does, in a line: `tcp port 25 to :9000: PROG...`, as it runs. */
export function portChainText(o: EverywhereOptions, index: number): string {
  const { port, chain } = o.overrides[index] ?? { port: 0, chain: [] };
  const words = chainCommand(chain, "tcpforward", o.mark + 1).map(shellWord);
  return `tcp port ${port} to :${chainPort(o, index)}: ${words.join(" ")}`;
}

/** `word` as sh reads it back: as it is when it is only safe characters, else single-quoted. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_./,:=+@%-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
