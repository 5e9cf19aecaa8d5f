// -x: what the rules say about one connection, read afresh each time (tcprules may have
// replaced the cdb), in djb's terms: allow (with the rule's variables), deny, or drop the
// connection when the rules cannot be read (-X: a missing file allows).
import { shownIp } from "../net/ip.ts";
import { causeText } from "../ucspi/errors.ts";
import { lookupRules, readRulesFile } from "../rules/rules.ts";
import type { Endpoints } from "./log.ts";
import type { ServerOptions } from "./options.ts";

export type RulesVerdict =
  | { kind: "allow"; env: [string, string][] }
  | { kind: "deny" }
  /** why: the rest of the warning line after "dropping connection, ". */
  | { kind: "drop"; why: string };

export function rulesVerdict(options: ServerOptions, ends: Endpoints): RulesVerdict {
  const file = options.rulesFile;
  if (file === undefined) return { kind: "allow", env: [] };
  let rules: Buffer;
  try {
    rules = readRulesFile(file);
  } catch (error) {
    const missing = (error as { code?: string }).code === "ENOENT";
    if (missing && options.missingRulesAllow) return { kind: "allow", env: [] };
    return { kind: "drop", why: `unable to read ${file}: ${causeText(error)}` };
  }
  try {
    const verdict = lookupRules(rules, {
      ip: shownIp(ends.remoteIp, options.v6Env),
      host: ends.remoteHost,
      info: ends.remoteInfo,
      localPort: options.originalDestination ? ends.localPort : undefined,
    });
    return verdict.deny ? { kind: "deny" } : { kind: "allow", env: verdict.env };
  } catch (error) {
    return { kind: "drop", why: `unable to read ${file}: ${causeText(error)}` };
  }
}
