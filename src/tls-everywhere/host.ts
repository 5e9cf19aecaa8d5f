// Installs tls-everywhere's rules on the host and takes out exactly those again: the nftables
// table, then each policy-routing rule and route, remembered as it is added, so that what was
// there before (and whatever else changes meanwhile) is left alone.
import { execFileSync } from "node:child_process";
import { FatalError } from "../ucspi/errors.ts";
import type { EverywhereOptions } from "./options.ts";
import { TABLE, nftRuleset, routingCommands, undoCommand } from "./rules.ts";

/** Runs a command; its first line of complaint, or undefined when it worked. */
function attempt(file: string, args: readonly string[], input?: string): string | undefined {
  try {
    execFileSync(file, args, { input: input ?? "", stdio: ["pipe", "pipe", "pipe"] });
    return undefined;
  } catch (error) {
    const e = error as { stderr?: Buffer; code?: string };
    if (e.code === "ENOENT") return `${file} is not installed`;
    const text = e.stderr?.toString("utf8").trim().split("\n")[0];
    return text || `${file} failed`;
  }
}

function output(file: string, args: readonly string[]): string {
  try {
    return execFileSync(file, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  } catch {
    return "";
  }
}

/** Refuses to start over rules that are there already: another tls-everywhere, or what one
 * killed with SIGKILL left behind. */
export function checkNotInstalled(o: EverywhereOptions): void {
  const hint = "(another tls-everywhere runs, or one was killed: tls-everywhere --remove)";
  if (attempt("nft", ["list", "table", "inet", TABLE]) === undefined)
    throw new FatalError(`already installed: nftables table inet ${TABLE} is there ${hint}`);
  for (const v of o.ipv6 ? ["-4", "-6"] : ["-4"]) {
    if (output("ip", [v, "route", "show", "table", String(o.table)]).trim() !== "")
      throw new FatalError(`routing table ${o.table} (${v}) is in use ${hint}`);
  }
}

export interface Installed {
  /** Takes out what was installed, last first; one line per step that failed. */
  remove(): string[];
}

/** Installs the table and the routing; on a failure, takes out what it had put in and throws. */
export function install(o: EverywhereOptions): Installed {
  const undo: (() => string | undefined)[] = [];
  const installed: Installed = {
    remove: () => {
      const failures: string[] = [];
      for (const step of undo.splice(0).reverse()) {
        const failed = step();
        if (failed !== undefined) failures.push(failed);
      }
      return failures;
    },
  };
  const failed = attempt("nft", ["-f", "-"], nftRuleset(o));
  if (failed !== undefined) throw new FatalError(`unable to install the nftables rules: ${failed}`);
  undo.push(() => attempt("nft", ["delete", "table", "inet", TABLE]));
  for (const command of routingCommands(o)) {
    const why = attempt("ip", command);
    if (why !== undefined) {
      installed.remove();
      throw new FatalError(`unable to run ip ${command.join(" ")}: ${why}`);
    }
    undo.push(() => attempt("ip", undoCommand(command)));
  }
  return installed;
}

/** --remove: every step, whether or not it is there; what was not there is no failure. */
export function removeLeftovers(o: EverywhereOptions): void {
  attempt("nft", ["delete", "table", "inet", TABLE]);
  for (const command of routingCommands(o).reverse()) attempt("ip", undoCommand(command));
}
