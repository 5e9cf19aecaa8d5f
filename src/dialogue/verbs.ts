// What the line grammars share: a command's verb, and what a command outside the short list
// of harmless ones means before TLS.
import type { ClientVerdict, Policy } from "./types.ts";

/** The verb of a command line (with its CRLF), upper-cased, and whether arguments follow. */
export function verbOf(line: string): { verb: string; hasArgs: boolean } {
  const text = line.slice(0, -2);
  const space = text.indexOf(" ");
  return { verb: (space < 0 ? text : text.slice(0, space)).toUpperCase(), hasArgs: space >= 0 };
}

/** Opportunistic: the client declined TLS, so the snooping ends; require: `reply`. */
export function notBeforeTls(policy: Policy, reply: string): ClientVerdict {
  return policy === "opportunistic" ? { kind: "pump" } : { kind: "answer", reply };
}
