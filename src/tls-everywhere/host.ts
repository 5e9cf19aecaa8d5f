// Installs tls-everywhere's rules on the host and takes out exactly those again: the nftables
// table, then each policy-routing rule and route, remembered as it is added, so that what was
// there before (and whatever else changes meanwhile) is left alone.
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { FatalError } from "../ucspi/errors.ts";
import { parseEverywhereArgs } from "./options.ts";
import type { EverywhereOptions } from "./options.ts";
import {
  alreadyRunning,
  chainsStartedBy,
  checkStateDir,
  isOurChain,
  parseTableComment,
  readOwnerRecord,
  removeOwnerRecord,
  runningElsewhere,
  stopProcesses,
} from "./owner.ts";
import { sameProcess, stillRuns } from "../proc/process-id.ts";
import type { ProcessId } from "../proc/process-id.ts";
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

function tableInstalled(): boolean {
  return attempt("nft", ["list", "table", "inet", TABLE]) === undefined;
}

/** The tls-everywhere the table's comment names as its owner (of any install, any --state). */
function tableOwner(): ReturnType<typeof parseTableComment> {
  const text = output("nft", ["list", "table", "inet", TABLE]);
  // The table's own comment is the line after its head (a rule's would end a rule's line).
  const comment = /^table inet \S+ \{\n\s*comment "(.*)"$/m.exec(text)?.[1];
  return comment === undefined ? undefined : parseTableComment(comment);
}

/** Refuses to start with lo down: the chain's connections to the services (this host's own
 * addresses) go through it, and so do the services' replies to the chain (the local route of
 * --table). TPROXY would still deliver IPv4 clients to the chain, which could reach no service:
 * each client would hang, where without the tool it is served. (The IPv6 local route is refused
 * outright: "Nexthop device is not up".) */
export function checkLoopbackUp(): void {
  // ip's own view (netlink), right in any namespace; not there, the install says so.
  const flags = /^\d+: lo: <([^>]*)>/.exec(output("ip", ["-o", "link", "show", "dev", "lo"]))?.[1];
  if (flags !== undefined && !flags.split(",").includes("UP"))
    throw new FatalError(
      "the loopback interface lo is down: the chain's connections to the services go through it (ip link set lo up)",
    );
}

/** Refuses to start over rules that are there already and no record in --state explains:
 * another tls-everywhere with a --state of its own, or rules of unknown origin. */
export function checkNotInstalled(o: EverywhereOptions): void {
  // Another tls-everywhere's were refused before (checkNoOtherOwner): these have no owner.
  const hint = `(not recorded in ${o.stateDir}, and no tls-everywhere runs: tls-everywhere --remove with the options that installed them takes them out)`;
  if (tableInstalled()) {
    // Its owner may have put it in since it was looked for (two started at once): then that
    // one is named, not "no tls-everywhere runs".
    checkNoOtherOwner(o);
    throw new FatalError(`already installed: nftables table inet ${TABLE} is there ${hint}`);
  }
  const ours = [o.mark, o.mark + 1].map((m) => `fwmark 0x${m.toString(16)} lookup ${o.table}`);
  for (const v of o.ipv6 ? ["-4", "-6"] : ["-4"]) {
    if (output("ip", [v, "route", "show", "table", String(o.table)]).trim() !== "")
      throw new FatalError(`routing table ${o.table} (${v}) is in use ${hint}`);
    // A rule of the host's that looks up --table would send its traffic to our local route.
    for (const line of output("ip", [v, "rule", "show", "table", String(o.table)]).split("\n")) {
      const rule = line.replace(/^[0-9]+:\s*/, "").trim();
      if (rule !== "" && !ours.includes(rule.replace(/^from all /, "")))
        throw new FatalError(
          `routing table ${o.table} (${v}) is looked up by a rule not of ours (${rule}): give --table a table of its own`,
        );
    }
  }
}

export interface Installed {
  /** Takes out what was installed, last first; one line per step that failed, naming it. */
  remove(): string[];
}

/** A step of the removal: its complaint, after the command it is about, or undefined. */
function undoing(file: string, args: readonly string[]): () => string | undefined {
  return () => {
    const why = attempt(file, args);
    return why === undefined ? undefined : `${file} ${args.join(" ")}: ${why}`;
  };
}

/** An install that failed: its cause, and each step of taking out what it had put in that
 * failed too (one line each, naming it: what may still be installed). */
export class InstallFailed extends FatalError {
  override name = "InstallFailed";
  readonly undoFailures: readonly string[];
  constructor(message: string, undoFailures: readonly string[]) {
    super(message);
    this.undoFailures = undoFailures;
  }
}

/** Installs the table (`comment` naming its owner) and the routing; on a failure, takes out
 * what it had put in and throws an InstallFailed. */
export function install(o: EverywhereOptions, comment: string): Installed {
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
  const failed = attempt("nft", ["-f", "-"], nftRuleset(o, comment));
  // The table is created, not added to: one that is there (another tls-everywhere's, started at
  // the same time with a --state of its own) is no table of ours, to add rules to, or to delete.
  if (failed?.includes("File exists"))
    throw new FatalError(
      `nftables table inet ${TABLE} was installed meanwhile (by another tls-everywhere starting): it is not ours, and stays`,
    );
  if (failed !== undefined) throw new FatalError(`unable to install the nftables rules: ${failed}`);
  undo.push(undoing("nft", ["delete", "table", "inet", TABLE]));
  for (const command of routingCommands(o)) {
    const why = attempt("ip", command);
    if (why !== undefined)
      throw new InstallFailed(`unable to run ip ${command.join(" ")}: ${why}`, installed.remove());
    undo.push(undoing("ip", undoCommand(command)));
  }
  return installed;
}

/** Refuses to touch the rules while another tls-everywhere, with a --state of its own, runs
 * here: they are that one's, and go when it stops. */
export function checkNoOtherOwner(o: EverywhereOptions): void {
  const other = runningElsewhere();
  if (other && other.stateDir !== o.stateDir) throw anotherOwner(other.pid, other.stateDir);
  // Another install's, which the look at the processes does not know as ours: its table names
  // it, as long as its rules are in.
  const table = tableOwner();
  if (!table || table.owner.pid === process.pid || !stillRuns(table.owner)) return;
  if (table.stateDir === resolve(o.stateDir)) throw alreadyRunning(table.owner.pid, o.stateDir);
  throw anotherOwner(table.owner.pid, table.stateDir);
}

function anotherOwner(pid: number, stateDir: string | undefined): FatalError {
  const state = stateDir === undefined ? "" : `, --state ${stateDir}`;
  return new FatalError(
    `the rules are another tls-everywhere's (pid ${pid}${state}): stop that one, and they go with it`,
  );
}

/** What a tls-everywhere that ended without taking out its rules left, as its record in --state
 * says: the chains to stop (ours, still running), the processes the record names that are not
 * (left alone), and the options its rules were made with. */
export interface Leftovers {
  owner: ProcessId;
  chains: ProcessId[];
  strangers: ProcessId[];
  made: EverywhereOptions;
}

/** The lookup that --remove, --remove --dry-run and a start share: the record in --state, if
 * any. A record of one still running is refused, and so is any touching of the rules while
 * another tls-everywhere, with a --state of its own, runs here. */
export function findLeftovers(o: EverywhereOptions): Leftovers | undefined {
  checkStateDir(o.stateDir);
  const record = readOwnerRecord(o.stateDir);
  if (record && stillRuns(record.owner)) throw alreadyRunning(record.owner.pid, o.stateDir);
  checkNoOtherOwner(o);
  if (!record) return undefined;
  let made = o;
  try {
    made = parseEverywhereArgs(record.args);
  } catch {
    // A record from a version with other options: the rules as this command line makes them.
  }
  // The chains it recorded, and those it started and had no time to record (a SIGKILL between
  // their start and their record): each names it in its environment.
  const recorded = record.chains.filter(isOurChain);
  const unrecorded = chainsStartedBy(record.owner).filter(
    (id) => !recorded.some((r) => sameProcess(r, id)),
  );
  return {
    owner: record.owner,
    chains: [...recorded, ...unrecorded],
    strangers: record.chains.filter((id) => stillRuns(id) && !isOurChain(id)),
    made,
  };
}

/** What a tls-everywhere that ended without taking out its rules left: found through the record
 * in --state (findLeftovers) and taken out (its chains stopped, its rules removed as its own
 * options made them). Says what was found, for a warning line; nothing when there was no
 * record. */
export async function takeOutLeftovers(o: EverywhereOptions): Promise<string | undefined> {
  const left = findLeftovers(o);
  if (!left) return undefined;
  const stopped = await stopProcesses(left.chains);
  const hadRules = tableInstalled();
  // The stop can take seconds, in which another tls-everywhere with this --state may have taken
  // over and started: the record is that one's now, and so are the rules.
  const now = readOwnerRecord(o.stateDir)?.owner;
  if (!now || !sameProcess(now, left.owner)) {
    if (now && stillRuns(now)) throw alreadyRunning(now.pid, o.stateDir);
    return `tls-everywhere (pid ${left.owner.pid}) ended without taking out what it installed: another tls-everywhere took it out meanwhile`;
  }
  removeLeftovers(left.made);
  removeOwnerRecord(o.stateDir, left.owner);
  const found = [
    ...(stopped.length > 0 ? [`stopped its chain (pid ${stopped.join(", ")})`] : []),
    ...(hadRules ? ["removed its rules"] : []),
    ...(left.strangers.length > 0
      ? [`left pid ${left.strangers.map((id) => id.pid).join(", ")} alone (not its chain)`]
      : []),
  ];
  return `tls-everywhere (pid ${left.owner.pid}) ended without taking out what it installed: ${found.length > 0 ? found.join(", ") : "nothing of it was left"}`;
}

/** --remove: every step, whether or not it is there; what was not there is no failure. */
export function removeLeftovers(o: EverywhereOptions): void {
  attempt("nft", ["delete", "table", "inet", TABLE]);
  for (const command of routingCommands(o).reverse()) attempt("ip", undoCommand(command));
}
