// SMTP (RFC 5321, RFC 3207) and LMTP (RFC 2033): STARTTLS in the EHLO/LHLO reply, right after
// its first line (the domain line); only EHLO/LHLO, NOOP, RSET, QUIT and STARTTLS before TLS
// in require mode; in opportunistic mode the first HELO, MAIL, AUTH or other command ends
// the snooping (skarnet's smtpd-starttls-proxy model: DATA, BDAT and AUTH are never parsed).
import type { ClientVerdict, Dialogue, DialogueFactory, Expect, Policy } from "./types.ts";
import { UpgradeSeen } from "./upgrade-seen.ts";
import { notBeforeTls, verbOf, wordsOf } from "./verbs.ts";

const CODE = /^[0-9]{3}/;

/** A (multi-line) reply ends at "ddd SP" or a bare "ddd"; a line with no code ends it too. */
const reply: Expect = {
  ends: (line) => !CODE.test(line) || line.charAt(3) !== "-",
};

const positive = (lines: readonly string[]) => (lines[0] ?? "").startsWith("2");
/** A reply line's text after "ddd-" or "ddd ", with its line end. */
const textOf = (line: string) => (/^[0-9]{3}[ -]/.test(line) ? line.slice(4) : line.slice(3));
/** The EHLO keyword of a reply line ("STARTTLS", "AUTH"...), upper-cased: its first word (a
 * space or a tab after it). */
export const keyword = (line: string) =>
  wordsOf(line.slice(4).replace(/\r?\n$/, ""))[0]?.toUpperCase() ?? "";

/** An AUTH line in any spelling: "AUTH PLAIN" (or with a tab), and the legacy "AUTH=LOGIN
 * PLAIN" that qmail's SMTP-AUTH patches and Postfix's broken_sasl_auth_clients send for old
 * clients. */
const isAuth = (line: string) => /^AUTH([ \t=]|\r?\n|$)/i.test(textOf(line));

/** The EHLO/LHLO reply with STARTTLS as its second line (never a duplicate); in require mode
 * without the AUTH lines, which are no use before TLS. `seen` hears whether the server's own
 * list had STARTTLS. */
function helloReply(policy: Policy, seen: UpgradeSeen): Expect {
  return {
    ends: reply.ends,
    rewrite(lines) {
      const first = lines[0];
      if (!first || !positive(lines)) return lines.join("");
      const code = first.slice(0, 3);
      const rest = lines.slice(1);
      seen.saw(rest.some((l) => keyword(l) === "STARTTLS"));
      const kept = rest.filter(
        (l) => keyword(l) !== "STARTTLS" && !(policy === "require" && isAuth(l)),
      );
      return replyOf(code, [first, "STARTTLS\r\n", ...kept]);
    },
  };
}

/** A reply of `lines` (the first as the server sent it, the others with or without their
 * "ddd-"): every line but the last is "ddd-", since the last one kept may not have been the
 * last. */
export function replyOf(code: string, lines: readonly string[]): string {
  const texts = lines.map((l, i) => (i === 0 || CODE.test(l) ? textOf(l) : l));
  return texts.map((t, i) => `${code}${i === texts.length - 1 ? " " : "-"}${t}`).join("");
}

/** A greeting that is not 220 (a 554 refusal) is passed on, and the snooping stops. */
const greeting: Expect = {
  ends: reply.ends,
  thenPump: (lines) => !(lines[0] ?? "").startsWith("220"),
};

function smtpFamily(protocol: "smtp" | "lmtp", hello: string): DialogueFactory {
  return (policy) => {
    const required = (verb: string): ClientVerdict =>
      notBeforeTls(
        policy,
        verb === "AUTH"
          ? "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
          : "530 5.7.0 Must issue a STARTTLS command first\r\n",
        verb,
      );
    const seen = new UpgradeSeen();
    const dialogue: Dialogue = {
      protocol,
      policy,
      maxLine: 2048,
      greeting: () => greeting,
      serverUpgrade: () => seen.state,
      command(line) {
        const { verb, hasArgs } = verbOf(line);
        switch (verb) {
          case hello:
            return { kind: "forward", expect: helloReply(policy, seen) };
          case "STARTTLS":
            if (hasArgs)
              return {
                kind: "answer",
                reply: "501 5.5.4 Syntax error (no parameters allowed)\r\n",
              };
            return {
              kind: "starttls",
              goAhead: "220 2.0.0 Ready to start TLS\r\n",
              unavailable: "454 4.7.0 TLS not available due to temporary reason\r\n",
              pipelined: "554 5.5.1 Error: command pipelined after STARTTLS\r\n",
            };
          case "NOOP":
          case "RSET":
          case "QUIT":
            return { kind: "forward", expect: reply };
          case "HELP":
          case "VRFY":
          case "EXPN":
            return policy === "opportunistic" ? { kind: "forward", expect: reply } : required(verb);
          default:
            return required(verb);
        }
      },
      malformed: (why) => `500 5.5.2 ${why}\r\n`,
      closing: (why) => `421 4.7.0 ${why}\r\n`,
    };
    return dialogue;
  };
}

export const smtp = smtpFamily("smtp", "EHLO");
export const lmtp = smtpFamily("lmtp", "LHLO");
