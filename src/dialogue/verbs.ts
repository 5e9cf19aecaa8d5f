// What the line grammars share: a command's verb, and what a command outside the short list
// of harmless ones means before TLS.
import type { ClientVerdict, Policy } from "./types.ts";

/** The verb of a command line (with its CRLF), upper-cased, and whether arguments follow. */
export function verbOf(line: string): { verb: string; hasArgs: boolean } {
  const text = line.slice(0, -2);
  const space = text.indexOf(" ");
  return { verb: (space < 0 ? text : text.slice(0, space)).toUpperCase(), hasArgs: space >= 0 };
}

/** The words of a server's capability text, split at spaces and tabs. The RFCs say one space;
 * a server that puts a tab there is read as its clients read it, so that a capability hidden
 * before TLS (AUTH, SASL, AUTH=) is never let through under another spelling. */
export function wordsOf(text: string): string[] {
  return text.split(/[ \t]+/).filter(Boolean);
}

/** Opportunistic: the client declined TLS, so the snooping ends; require: `reply`, and a log
 * line that names the command (`verb`, the client's word: the log shows it printable). */
export function notBeforeTls(policy: Policy, reply: string, verb = ""): ClientVerdict {
  if (policy === "opportunistic") return { kind: "pump" };
  return { kind: "answer", reply, log: `${verb || "a command"} before STARTTLS: refused (-r)` };
}

/** A command line that announces a literal (`{n}`, `{n+}`): its bytes would follow as data the
 * wrapper does not parse, so never before TLS: the end of snooping, or `bye` and the end. */
export function literalVerdict(
  policy: Policy,
  text: string,
  bye: string,
): ClientVerdict | undefined {
  if (!/\{[0-9]+\+?\}$/.test(text)) return undefined;
  if (policy === "opportunistic") return { kind: "pump" };
  return { kind: "close", reply: bye, log: "literal before STARTTLS" };
}
