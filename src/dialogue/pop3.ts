// POP3 (RFC 1939, RFC 2449, RFC 2595 §4): STLS in the CAPA list, answered by the wrapper
// itself when the server knows no CAPA; before TLS only CAPA, STLS and QUIT are followed. USER,
// PASS, APOP or AUTH (the client declined TLS) end the snooping in opportunistic mode and get
// -ERR [AUTH] in require mode.
import { capabilityList } from "./capability-list.ts";
import type { Dialogue, DialogueFactory, Expect } from "./types.ts";
import { ONE_LINE } from "./types.ts";
import { UpgradeSeen } from "./upgrade-seen.ts";
import { notBeforeTls, verbOf } from "./verbs.ts";

/** The CAPA reply, with STLS; in require mode without USER and SASL, no use before TLS. A
 * server without CAPA (-ERR) gets a list of ours. */
const CAPA = {
  ok: "+OK",
  upgrade: "STLS",
  hidden: ["USER", "SASL"],
  fallback: "+OK Capability list follows\r\nSTLS\r\n.\r\n",
};

/** A greeting that is not +OK is passed on, and the snooping stops. Its APOP timestamp
 * (<...@...>) is taken out: after STLS the client talks to a fresh server with a timestamp of
 * its own, and an APOP digest made with this one would fail (curl, for one, prefers APOP
 * whenever the greeting offers it). */
const greeting: Expect = {
  ends: () => true,
  rewrite: (lines) => {
    const line = lines[0] ?? "";
    return line.startsWith("+OK") ? line.replace(/ ?<[^<>\s]*@[^<>\s]*>/, "") : line;
  },
  thenPump: (lines) => !(lines[0] ?? "").startsWith("+OK"),
};

export const pop3: DialogueFactory = (policy) => {
  const refuse = (reply: string, verb: string) => notBeforeTls(policy, reply, verb);
  const seen = new UpgradeSeen();
  const dialogue: Dialogue = {
    protocol: "pop3",
    policy,
    maxLine: 255,
    greeting: () => greeting,
    serverUpgrade: () => seen.state,
    command(line) {
      const { verb, hasArgs } = verbOf(line);
      switch (verb) {
        case "STLS":
          if (hasArgs) return { kind: "answer", reply: "-ERR STLS takes no arguments\r\n" };
          return {
            kind: "starttls",
            goAhead: "+OK Begin TLS negotiation\r\n",
            unavailable: "-ERR [SYS/TEMP] TLS is not available now\r\n",
            pipelined: "-ERR Command pipelined after STLS\r\n",
          };
        case "CAPA":
          return { kind: "forward", expect: capabilityList(CAPA, policy, seen) };
        case "QUIT":
          return { kind: "forward", expect: ONE_LINE };
        case "USER":
        case "PASS":
        case "APOP":
        case "AUTH":
          return refuse(
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n",
            verb,
          );
        default:
          return refuse("-ERR TLS is required first: use STLS\r\n", verb);
      }
    },
    malformed: (why) => `-ERR ${why}\r\n`,
    closing: (why) => `-ERR ${why}\r\n`,
  };
  return dialogue;
};
