// tcprulescheck rules.cdb: say what tcpserver -x rules.cdb would do with a client described by
// TCPREMOTEIP (default 0.0.0.0), TCPREMOTEHOST and TCPREMOTEINFO, in djb's words; with
// TCPLOCALPORT, as tcpserver --transparent or --redirected would (PORT/key first).
import { FatalError, UsageError, causeText } from "../ucspi/errors.ts";
import { startEnv } from "../ucspi/env.ts";
import { helpAsked } from "../cli/help.ts";
import { programArgs, reportError, writeStderr } from "../cli/main.ts";
import { writeAll } from "../cli/stdio.ts";
import { findRule, readRulesFile, ruleItems } from "../rules/rules.ts";
import type { RuleMatch } from "../rules/rules.ts";

const USAGE = "tcprulescheck rules.cdb";

/** djb's report: the rule, its variables in order, then allow, or deny at the first `D` item. */
function report(match: RuleMatch | undefined): Buffer {
  if (match === undefined) return Buffer.from("default:\nallow connection\n", "latin1");
  const lines: Buffer[] = [Buffer.from(`rule ${match.key}:\n`, "latin1")];
  for (const item of ruleItems(match.data)) {
    if (item[0] === 0x44 /* D */) {
      lines.push(Buffer.from("deny connection\n", "latin1"));
      return Buffer.concat(lines);
    }
    if (item[0] === 0x2b /* + */) {
      const prefix = Buffer.from("set environment variable ", "latin1");
      lines.push(prefix, item.subarray(1), Buffer.from("\n", "latin1"));
    }
  }
  lines.push(Buffer.from("allow connection\n", "latin1"));
  return Buffer.concat(lines);
}

function main(args: readonly string[]): number {
  if (helpAsked("tcprulescheck", args, USAGE)) return 0;
  const file = args[0];
  if (file === undefined) throw new UsageError("");
  const env = startEnv(process.env);
  let match: RuleMatch | undefined;
  try {
    match = findRule(readRulesFile(file), {
      ip: env["TCPREMOTEIP"] ?? "0.0.0.0",
      host: env["TCPREMOTEHOST"],
      info: env["TCPREMOTEINFO"],
      localPort: portOf(env["TCPLOCALPORT"]),
    });
  } catch (error) {
    throw new FatalError(`unable to read ${file}: ${causeText(error)}`, 111, { cause: error });
  }
  writeOut(report(match));
  return 0;
}

/** A port number 1-65535 as tcpserver writes it, or undefined (djb's keys only). */
function portOf(text: string | undefined): number | undefined {
  if (text === undefined || !/^[1-9][0-9]{0,4}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

/** All of `bytes` to stdout; like djb's buffer_flush, a failed write is not an error. */
function writeOut(bytes: Buffer): void {
  try {
    writeAll(1, bytes);
  } catch {
    // stdout gone: nothing better to do with the bytes.
  }
}

try {
  process.exitCode = main(programArgs());
} catch (error) {
  process.exitCode = reportError("tcprulescheck", error, writeStderr, USAGE);
}
