// A capability list that is a dot-ended multi-line reply (POP3 CAPA, NNTP CAPABILITIES), with
// the upgrade capability added before the dot.
import type { Expect, Policy } from "./types.ts";
import type { UpgradeSeen } from "./upgrade-seen.ts";
import { wordsOf } from "./verbs.ts";

export interface CapabilityList {
  /** How a positive reply's first line starts ("+OK", "101"). */
  ok: string;
  /** The upgrade capability ("STLS", "STARTTLS"), added once. */
  upgrade: string;
  /** Capabilities of no use before TLS, taken out in require mode (by their first word). */
  hidden: readonly string[];
  /** Our own list, for a server that knows no such command (the reply is an error). */
  fallback: string;
}

/** The reply's lines up to "."; the upgrade added before the end (once); in require mode
 * without the hidden capabilities. `seen` hears whether the server listed the upgrade (an
 * error, a server without the command, lists nothing a client could find it in). */
export function capabilityList(list: CapabilityList, policy: Policy, seen?: UpgradeSeen): Expect {
  return {
    ends: (line, lines) =>
      !(lines[0] ?? line).startsWith(list.ok) || (lines.length > 0 && /^\.\r?\n$/.test(line)),
    rewrite(lines) {
      if (!(lines[0] ?? "").startsWith(list.ok)) {
        seen?.saw(false);
        return list.fallback;
      }
      const word = (l: string) => wordsOf(l.replace(/\r?\n$/, ""))[0]?.toUpperCase() ?? "";
      const listed = lines.slice(1, -1);
      seen?.saw(listed.some((l) => word(l) === list.upgrade));
      const body = listed.filter(
        (l) => word(l) !== list.upgrade && !(policy === "require" && list.hidden.includes(word(l))),
      );
      return [lines[0], ...body, `${list.upgrade}\r\n`, lines[lines.length - 1]].join("");
    },
  };
}
