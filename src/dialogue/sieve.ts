// ManageSieve (RFC 5804): the greeting is a capability list, with "STARTTLS" added before its
// OK line, and so is the CAPABILITY reply; before TLS only CAPABILITY, NOOP, LOGOUT and
// STARTTLS are followed. AUTHENTICATE (the client declined TLS) or any other command ends the
// snooping in opportunistic mode and is refused in require mode (NO (ENCRYPT-NEEDED)). A
// literal is never parsed before TLS. Unlike the other protocols, the server sends its
// capabilities again after STARTTLS: the fresh server's greeting behind TLS is kept.
import type { ClientVerdict, Dialogue, DialogueFactory, Expect, Policy } from "./types.ts";
import { UpgradeSeen } from "./upgrade-seen.ts";
import { literalVerdict, notBeforeTls } from "./verbs.ts";

/** A response line: OK, NO or BYE, alone or followed by a space. */
const RESPONSE = /^(OK|NO|BYE)(\s|$)/i;
const isStartTls = (line: string) => /^"STARTTLS"\r?\n$/i.test(line);

/** A capability list (the greeting, the CAPABILITY reply) up to its response line, with
 * "STARTTLS" added before that line (once); in require mode the SASL mechanisms emptied, no
 * use before TLS. A response other than OK is passed as it is. */
function capabilityList(policy: Policy, thenPump: boolean, seen: UpgradeSeen): Expect {
  return {
    ends: (line) => RESPONSE.test(line),
    rewrite(lines) {
      const end = lines[lines.length - 1] ?? "";
      if (!/^OK/i.test(end)) return lines.join("");
      seen.saw(lines.some(isStartTls));
      const caps = lines
        .slice(0, -1)
        .filter((l) => !isStartTls(l))
        .map((l) => (policy === "require" && /^"SASL"/i.test(l) ? '"SASL" ""\r\n' : l));
      return [...caps, '"STARTTLS"\r\n', end].join("");
    },
    ...(thenPump ? { thenPump: (lines) => !/^OK/i.test(lines[lines.length - 1] ?? "") } : {}),
  };
}

const response: Expect = { ends: (line) => RESPONSE.test(line) };

export const sieve: DialogueFactory = (policy) => {
  const refuse = (reply: string, verb: string): ClientVerdict =>
    notBeforeTls(policy, reply, verb.toUpperCase());
  const seen = new UpgradeSeen();
  const dialogue: Dialogue = {
    protocol: "sieve",
    policy,
    maxLine: 8192,
    greetsAgainAfterTls: true,
    greeting: () => capabilityList(policy, true, seen),
    serverUpgrade: () => seen.state,
    command(line) {
      const text = line.slice(0, -2);
      const literal = literalVerdict(
        policy,
        text,
        'BYE "Literals are not accepted before STARTTLS."\r\n',
      );
      if (literal) return literal;
      const [verb = "", ...rest] = text.split(" ");
      switch (verb.toUpperCase()) {
        case "STARTTLS":
          if (rest.length > 0)
            return { kind: "answer", reply: 'NO "STARTTLS takes no arguments."\r\n' };
          return {
            kind: "starttls",
            goAhead: 'OK "Begin TLS negotiation now."\r\n',
            unavailable: 'NO "TLS is not available now."\r\n',
            pipelined: 'BYE "Command pipelined after STARTTLS."\r\n',
          };
        case "CAPABILITY":
          return { kind: "forward", expect: capabilityList(policy, false, seen) };
        case "NOOP":
        case "LOGOUT":
          return { kind: "forward", expect: response };
        case "AUTHENTICATE":
          return refuse('NO (ENCRYPT-NEEDED) "TLS is required before authentication."\r\n', verb);
        default:
          return refuse('NO "TLS is required first: use STARTTLS."\r\n', verb);
      }
    },
    malformed: (why) => `BYE "${why}"\r\n`,
    closing: (why) => `BYE "${why}"\r\n`,
  };
  return dialogue;
};
