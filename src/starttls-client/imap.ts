// IMAP (RFC 9051 §6.2.1, RFC 2595): CAPABILITY, then STARTTLS, each answered by its tag. The
// greeting given to the program over TLS loses its response code ([CAPABILITY ...],
// [REFERRAL ...], [ALERT] ...): it came in plaintext, where anyone on the path could have put
// it, and the program reads the greeting as if it came over TLS (a client asks for the
// capabilities again after STARTTLS anyway, RFC 9051 §6.2.1).
import { UpgradeError, quoted } from "./reader.ts";
import type { ClientUpgrade } from "./types.ts";

/** The capability atoms of "* CAPABILITY ..." lines, upper-cased. */
export function capabilityAtoms(lines: readonly string[]): string[] {
  const atoms: string[] = [];
  for (const line of lines) {
    const m = /^\* CAPABILITY ([^\r\n]*)/i.exec(line);
    if (m)
      atoms.push(
        ...(m[1] ?? "")
          .split(" ")
          .filter(Boolean)
          .map((a) => a.toUpperCase()),
      );
  }
  return atoms;
}

/** "* OK [CODE ...] text" → "* OK text", whatever the code (one level of brackets inside it,
 * as in a REFERRAL to imap://[::1]/); any other greeting as it is. */
export function greetingWithoutCode(line: string): string {
  return line.replace(/^(\* OK )\[(?:[^[\]\r\n]|\[[^[\]\r\n]*\])*\] ?/i, "$1");
}

/** An untagged BYE: the server closes the connection next (RFC 9051 §7.1.5). */
const isBye = (line: string) => /^\* BYE\b/i.test(line);

/** Lines up to the one tagged `tag`; that one must be OK. A BYE before it ends the dialogue
 * with its words (they were lost in "server closed the connection"). */
async function tagged(io: Parameters<ClientUpgrade>[0], tag: string, what: string) {
  const lines = await io.reply((line) => line.startsWith(`${tag} `) || isBye(line));
  const status = lines[lines.length - 1] ?? "";
  if (isBye(status))
    throw new UpgradeError("refused", `server ended the session at ${what}: ${quoted(status)}`);
  if (!/^\S+ OK\b/i.test(status)) {
    throw new UpgradeError(
      what === "STARTTLS" ? "refused" : "not-offered",
      `server refused ${what}: ${quoted(status)}`,
    );
  }
  return lines.slice(0, -1);
}

export const imap: ClientUpgrade = async (io) => {
  const greeting = await io.line();
  if (/^\* PREAUTH\b/i.test(greeting))
    throw new UpgradeError("protocol", "server greeted with PREAUTH: no STARTTLS after it");
  if (!/^\* OK\b/i.test(greeting))
    throw new UpgradeError("refused", `server refused the session: ${quoted(greeting)}`);
  io.keep(greetingWithoutCode(greeting));
  io.send("t1 CAPABILITY\r\n");
  const capabilities = capabilityAtoms(await tagged(io, "t1", "CAPABILITY"));
  if (!capabilities.includes("STARTTLS"))
    throw new UpgradeError("not-offered", "server does not offer STARTTLS");
  io.send("t2 STARTTLS\r\n");
  await tagged(io, "t2", "STARTTLS");
};
