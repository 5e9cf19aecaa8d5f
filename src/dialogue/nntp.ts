// NNTP (RFC 3977, RFC 4642, RFC 4643): STARTTLS in the CAPABILITIES list (answered by the
// wrapper itself when the server knows no CAPABILITIES); before TLS only CAPABILITIES,
// MODE READER, QUIT and STARTTLS are followed. AUTHINFO or any other command (the client
// declined TLS) ends the snooping in opportunistic mode and gets 483 in require mode. A POST or
// IHAVE article is never parsed: its command ends the snooping first.
import { capabilityList } from "./capability-list.ts";
import type { Dialogue, DialogueFactory, Expect } from "./types.ts";
import { ONE_LINE } from "./types.ts";
import { notBeforeTls, verbOf } from "./verbs.ts";

/** The CAPABILITIES reply, with STARTTLS; in require mode without AUTHINFO, no use before
 * TLS. A server without CAPABILITIES (an error: an RFC 977 server, whose commands are the
 * reader's) gets a list of ours: READER, and POST when its greeting (200), or its latest
 * answer to MODE READER, allows posting. */
function capabilities(posting: boolean) {
  return {
    ok: "101",
    upgrade: "STARTTLS",
    hidden: ["AUTHINFO", "SASL"],
    fallback: `101 Capability list:\r\nVERSION 2\r\nREADER\r\n${posting ? "POST\r\n" : ""}STARTTLS\r\n.\r\n`,
  };
}

export const nntp: DialogueFactory = (policy) => {
  let posting = false;
  /** A greeting that is not 200 or 201 (400, 502: no service) is passed on, and the snooping
   * stops; 200 says posting is allowed. */
  const greeting: Expect = {
    ends: () => true,
    thenPump: (lines) => {
      posting = /^200/.test(lines[0] ?? "");
      return !/^20[01]/.test(lines[0] ?? "");
    },
  };
  /** MODE READER's 200 or 201 says anew whether posting is allowed (RFC 3977 5.3). */
  const modeReader: Expect = {
    ends: () => true,
    thenPump: (lines) => {
      const code = (lines[0] ?? "").slice(0, 3);
      if (code === "200" || code === "201") posting = code === "200";
      return false;
    },
  };
  const dialogue: Dialogue = {
    protocol: "nntp",
    policy,
    maxLine: 512,
    greeting: () => greeting,
    // No serverUpgrade: a server may list STARTTLS in one mode and not another (RFC 3977 5.3,
    // RFC 4642 2.2), so a list seen in one mode says nothing of the next; the filter stays.
    command(line) {
      const { verb, hasArgs } = verbOf(line);
      switch (verb) {
        case "STARTTLS":
          if (hasArgs) return { kind: "answer", reply: "501 STARTTLS takes no arguments\r\n" };
          return {
            kind: "starttls",
            goAhead: "382 Continue with TLS negotiation\r\n",
            unavailable: "580 Can not initiate TLS negotiation\r\n",
            pipelined: "400 Command pipelined after STARTTLS\r\n",
          };
        case "CAPABILITIES":
          return { kind: "forward", expect: capabilityList(capabilities(posting), policy) };
        case "QUIT":
          return { kind: "forward", expect: ONE_LINE };
        case "MODE":
          if (/^MODE READER\r\n$/i.test(line)) return { kind: "forward", expect: modeReader };
          return notBeforeTls(
            policy,
            "483 Encryption or stronger authentication required\r\n",
            verb,
          );
        default:
          return notBeforeTls(
            policy,
            "483 Encryption or stronger authentication required\r\n",
            verb,
          );
      }
    },
    malformed: (why) => `501 ${why}\r\n`,
    closing: (why) => `400 ${why}\r\n`,
  };
  return dialogue;
};
