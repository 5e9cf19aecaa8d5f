// IMAP (RFC 3501/9051, RFC 2595): STARTTLS in the greeting's [CAPABILITY ...] code and in the
// untagged CAPABILITY reply (with LOGINDISABLED and no AUTH= mechanism in require mode).
// Before TLS only CAPABILITY, NOOP, LOGOUT, ID and STARTTLS are followed; LOGIN or AUTHENTICATE
// (the client declined TLS) ends the snooping in opportunistic mode and is refused with
// [PRIVACYREQUIRED] in require mode. A literal is never parsed before TLS.
import type { ClientVerdict, Dialogue, DialogueFactory, Expect, Policy } from "./types.ts";
import { UpgradeSeen } from "./upgrade-seen.ts";
import { literalVerdict, notBeforeTls, wordsOf } from "./verbs.ts";

/** tag SP command [SP arguments]: the tag is any atom character but "+" (RFC 9051 §9). */
const COMMAND = /^([^\s(){%*"\\\]+]+) ([A-Za-z]+)(?: (.*))?$/;

/** Capability atoms with STARTTLS added (once) and, in require mode, plaintext logins off;
 * `seen` hears whether the server's own atoms had STARTTLS. */
function capabilities(atoms: string[], policy: Policy, seen: UpgradeSeen): string[] {
  seen.saw(atoms.some((a) => a.toUpperCase() === "STARTTLS"));
  let out = atoms.filter((a) => a.toUpperCase() !== "STARTTLS");
  if (policy === "require") {
    // No mechanism before TLS: each AUTHENTICATE would be refused ([PRIVACYREQUIRED]).
    out = out.filter((a) => !/^(AUTH=.*|LOGINDISABLED)$/i.test(a));
    out.push("STARTTLS", "LOGINDISABLED");
  } else {
    out.push("STARTTLS");
  }
  return out;
}

/** "* CAPABILITY a b c" lines and "[CAPABILITY a b c]" response codes (tagged or not) get the
 * atoms; other lines pass as they are. */
function rewriteCapabilityLine(line: string, policy: Policy, seen: UpgradeSeen): string {
  const m = /^\* CAPABILITY[ \t]([^\r\n]*)(\r?\n)$/i.exec(line);
  if (m)
    return `* CAPABILITY ${capabilities(wordsOf(m[1] ?? ""), policy, seen).join(" ")}${m[2] ?? ""}`;
  return line.replace(
    /^([^ ]+ (?:OK|NO|BAD|BYE) \[CAPABILITY[ \t])([^\]]*)\]/i,
    (_all, head: string, atoms: string) =>
      `${head}${capabilities(wordsOf(atoms), policy, seen).join(" ")}]`,
  );
}

/** Inside TLS: a CAPABILITY list ("* CAPABILITY ..." or a "[CAPABILITY ...]" response code)
 * without STARTTLS, which a server after STARTTLS must not offer again; other lines as they
 * are. */
export function withoutStartTls(line: string): string {
  const drop = (atoms: string) =>
    wordsOf(atoms)
      .filter((a) => a.toUpperCase() !== "STARTTLS")
      .join(" ");
  const list = /^(\* CAPABILITY[ \t])([^\r\n]*)(\r?\n)$/i.exec(line);
  if (list) return `${list[1] ?? ""}${drop(list[2] ?? "")}${list[3] ?? ""}`;
  return line.replace(
    /^([^ ]+ (?:OK|NO|BAD|PREAUTH|BYE) \[CAPABILITY[ \t])([^\]]*)\]/i,
    (_all, head: string, atoms: string) => `${head}${drop(atoms)}]`,
  );
}

/** The greeting: "* OK [CAPABILITY ...] text" gets the atoms; PREAUTH (the client would be
 * authenticated with no STARTTLS possible) ends the snooping, or the connection when TLS is
 * required; BYE ends the snooping. */
function greeting(policy: Policy, seen: UpgradeSeen): Expect {
  return {
    ends: () => true,
    rewrite(lines) {
      const line = lines[0] ?? "";
      if (/^\* PREAUTH\b/i.test(line) && policy === "require")
        return "* BYE TLS is required, and this server is pre-authenticated\r\n";
      return line.replace(
        /^(\* OK \[CAPABILITY[ \t])([^\]]*)\]/i,
        (_all, head: string, atoms: string) =>
          `${head}${capabilities(wordsOf(atoms), policy, seen).join(" ")}]`,
      );
    },
    thenPump: (lines) => !/^\* OK\b/i.test(lines[0] ?? ""),
    thenClose: (lines) => policy === "require" && /^\* PREAUTH\b/i.test(lines[0] ?? ""),
  };
}

/** The reply to a command tagged `tag`: untagged lines, then "tag OK|NO|BAD ...". Any reply
 * may carry capabilities (an untagged CAPABILITY, a [CAPABILITY] code in its tagged line):
 * each gets the wrapper's atoms, so that no reply offers a mechanism, or lacks STARTTLS and
 * LOGINDISABLED, that the others do not. */
function tagged(tag: string, policy: Policy, seen: UpgradeSeen): Expect {
  return {
    ends: (line) => line.startsWith(`${tag} `),
    rewrite: (lines: readonly string[]) =>
      lines.map((l) => rewriteCapabilityLine(l, policy, seen)).join(""),
  };
}

export const imap: DialogueFactory = (policy) => {
  const refuse = (reply: string, command = ""): ClientVerdict =>
    notBeforeTls(policy, reply, command);
  const seen = new UpgradeSeen();
  const dialogue: Dialogue = {
    protocol: "imap",
    policy,
    maxLine: 8192,
    greeting: () => greeting(policy, seen),
    serverUpgrade: () => seen.state,
    command(line) {
      const text = line.slice(0, -2);
      const m = COMMAND.exec(text);
      if (!m) return refuse("* BAD Command line not understood\r\n");
      const tag = m[1] ?? "";
      const command = (m[2] ?? "").toUpperCase();
      const args = m[3];
      const literal = literalVerdict(
        policy,
        text,
        "* BYE Literals are not accepted before STARTTLS\r\n",
      );
      if (literal) return literal;
      switch (command) {
        case "STARTTLS":
          if (args !== undefined)
            return { kind: "answer", reply: `${tag} BAD STARTTLS takes no arguments\r\n` };
          return {
            kind: "starttls",
            goAhead: `${tag} OK Begin TLS negotiation now\r\n`,
            unavailable: `${tag} NO [UNAVAILABLE] TLS is not available now\r\n`,
            pipelined: `* BYE Command pipelined after STARTTLS\r\n`,
          };
        case "CAPABILITY":
          return { kind: "forward", expect: tagged(tag, policy, seen) };
        case "NOOP":
        case "LOGOUT":
        case "ID":
          return { kind: "forward", expect: tagged(tag, policy, seen) };
        case "LOGIN":
        case "AUTHENTICATE":
          return refuse(
            `${tag} NO [PRIVACYREQUIRED] TLS is required before authentication\r\n`,
            command,
          );
        default:
          return refuse(`${tag} BAD TLS is required first: use STARTTLS\r\n`, command);
      }
    },
    malformed: (why) => `* BYE ${why}\r\n`,
    closing: (why) => `* BYE ${why}\r\n`,
  };
  return dialogue;
};
