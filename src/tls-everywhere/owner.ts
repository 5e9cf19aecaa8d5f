// Who installed the rules: a record in --state of the running tls-everywhere (its process, its
// chains' processes, its command line), so that a start after a SIGKILL, which no process can
// catch, stops the chains left behind and takes out exactly the rules they were made with,
// instead of refusing until someone runs --remove. A process is named by its pid and its start
// time, so a pid the kernel has since given to another program is never taken for it.
import { readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { AtomicWriteError, writeFileAtomic } from "../files/atomic-write.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { ourLauncher } from "../ucspi/programs.ts";
import { processId, sameProcess, stillRuns } from "../proc/process-id.ts";
import type { ProcessId } from "../proc/process-id.ts";
import { OWNER_VARIABLE } from "./mark.ts";
import { parseEverywhereArgs } from "./options.ts";

export interface OwnerRecord {
  owner: ProcessId;
  chains: ProcessId[];
  /** tls-everywhere's arguments, which made the rules. */
  args: string[];
}

const FILE = "running.json";

/** Where the record of the tls-everywhere with this --state is kept. */
export function ownerRecordFile(stateDir: string): string {
  return join(stateDir, FILE);
}

const DISTRUST = "its record cannot be trusted";

/** Refuses a --state directory that another user could write, or swap for one of their own
 * through a directory above it: its record says which processes get signalled and which rules
 * are taken out, so it must be as much ours as those are. */
export function checkStateDir(dir: string): void {
  for (const parent of parentsOf(dir)) checkParent(dir, parent);
  let st;
  try {
    st = statSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return; // made 0700 when it runs
    throw new FatalError(`unable to read --state ${dir}: ${causeText(error)}`);
  }
  if (!st.isDirectory()) throw new FatalError(`--state ${dir} is not a directory`);
  if (!ours(st.uid))
    throw new FatalError(`--state ${dir} belongs to uid ${st.uid}, not root: ${DISTRUST}`);
  if ((st.mode & 0o022) !== 0)
    throw new FatalError(
      `--state ${dir} is writable by others (mode ${modeText(st.mode)}): ${DISTRUST}; chmod go-w it`,
    );
}

/** Root's or this user's. */
function ours(uid: number): boolean {
  return uid === 0 || uid === (process.getuid?.() ?? 0);
}

function modeText(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/** The directories above `dir`, from / down: those of the path as given and, where a symbolic
 * link leads elsewhere, those of the path it leads to (of the part that exists yet). */
function parentsOf(dir: string): string[] {
  const above = (path: string) => {
    const list: string[] = [];
    for (let p = dirname(path); ; p = dirname(p)) {
      list.unshift(p);
      if (p === dirname(p)) return list;
    }
  };
  const given = resolve(dir);
  let existing = given;
  let rest = "";
  for (;;) {
    try {
      const real = realpathSync(existing);
      const target = rest === "" ? real : join(real, rest);
      return [...new Set([...above(given), ...above(target)])];
    } catch {
      if (existing === dirname(existing)) return above(given);
      rest = rest === "" ? basename(existing) : join(basename(existing), rest);
      existing = dirname(existing);
    }
  }
}

/** A directory above --state: another user who could rename or replace what is in it (it is
 * theirs, or others may write it and it is not sticky) could put a --state of their own there. */
function checkParent(dir: string, parent: string): void {
  let st;
  try {
    st = statSync(parent);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return; // made 0700 when it runs
    throw new FatalError(`unable to read ${parent}, above --state ${dir}: ${causeText(error)}`);
  }
  if (!ours(st.uid))
    throw new FatalError(
      `--state ${dir} is under ${parent}, which belongs to uid ${st.uid}, not root: ${DISTRUST}`,
    );
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)
    throw new FatalError(
      `--state ${dir} is under ${parent}, which is writable by others (mode ${modeText(st.mode)}) and not sticky: ${DISTRUST}; chmod go-w it`,
    );
}

/** The arguments of `pid` when it runs our program `name` (this package's, as its launcher runs
 * it: our node with dist/NAME.cjs, or the single executable started as NAME); else undefined. */
export function ourProgramArgs(pid: number, name: string): string[] | undefined {
  const launcher = ourLauncher();
  if (!launcher) return undefined;
  const root = dirname(dirname(launcher));
  let words: string[];
  let exe: string;
  try {
    words = readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").slice(0, -1);
    exe = readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
  if (exe === join(root, "build", "ucspi-tls"))
    return words[0] === name ? words.slice(1) : undefined;
  const script = words.indexOf(join(root, "dist", `${name}.cjs`));
  return script > 0 ? words.slice(script + 1) : undefined;
}

/** Whether the process a record names as a chain is one: our tcpserver, started as
 * tls-everywhere starts its chains, running as we do. A record is only words in a file, and a
 * command line and an environment are anyone's to copy: no other process is ever signalled
 * for them. */
export function isOurChain(id: ProcessId): boolean {
  const args = ourProgramArgs(id.pid, "tcpserver");
  return (
    args?.[0] === "-1vRHl0" && args.includes("--transparent") && runsAsUs(id.pid) && stillRuns(id)
  );
}

/** Whether each uid of `pid` (real, effective, saved, filesystem: /proc/PID/status) is ours: a
 * chain we started never changes user, and another user's process is not ours to signal. */
function runsAsUs(pid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "latin1");
  } catch {
    return false;
  }
  const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
  const me = String(process.getuid?.() ?? 0);
  return uids.length === 4 && uids.every((uid) => uid === me);
}

/** OWNER_VARIABLE's value for the chains of `id`. */
export function ownerMark(id: ProcessId): string {
  return `${id.pid}:${id.since}`;
}

/** The chains `owner` started (our tcpserver, run as a chain), found by the variable in their
 * environment: those it had no time to record too. */
export function chainsStartedBy(owner: ProcessId): ProcessId[] {
  const mark = `${OWNER_VARIABLE}=${ownerMark(owner)}`;
  const found: ProcessId[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, "latin1");
    } catch {
      continue;
    }
    if (!environ.split("\0").includes(mark)) continue;
    const id = processId(Number(entry));
    if (id && isOurChain(id)) found.push(id);
  }
  return found;
}

/** The comment of the nftables table a running tls-everywhere installs: its pid, its start
 * time and (when it fits, in nft's 128 characters, as plain words) its --state. Any
 * tls-everywhere, of any install, finds the owner of the table there. */
export function tableComment(owner: ProcessId, stateDir: string): string {
  const text = `tls-everywhere ${owner.pid} ${owner.since}`;
  const state = resolve(stateDir);
  const withState = `${text} ${state}`;
  return /^[A-Za-z0-9_./,:=+@%-]+$/.test(state) && withState.length <= 128 ? withState : text;
}

/** The owner a table's comment names (tableComment), or undefined when it names none. */
export function parseTableComment(
  comment: string,
): { owner: ProcessId; stateDir: string | undefined } | undefined {
  const m = /^tls-everywhere ([0-9]+) ([0-9]+)(?: (\/\S*))?$/.exec(comment);
  if (!m) return undefined;
  return { owner: { pid: Number(m[1]), since: m[2] ?? "" }, stateDir: m[3] };
}

/** Another tls-everywhere that runs in this network namespace (whose rules are the only ones
 * here: one table, one name) and that its own record in its --state names: the owner of the
 * rules a command with another --state finds. */
export function runningElsewhere(): { pid: number; stateDir: string } | undefined {
  let ours: string;
  try {
    ours = readlinkSync("/proc/self/ns/net");
  } catch {
    return undefined;
  }
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!/^[0-9]+$/.test(entry) || pid === process.pid) continue;
    const args = ourProgramArgs(pid, "tls-everywhere");
    if (!args) continue;
    let o;
    try {
      if (readlinkSync(`/proc/${pid}/ns/net`) !== ours) continue;
      o = parseEverywhereArgs(args);
    } catch {
      continue;
    }
    if (o.dryRun || o.remove) continue;
    const stateDir = isAbsolute(o.stateDir) ? o.stateDir : join(`/proc/${pid}/cwd`, o.stateDir);
    const owner = readOwnerRecord(stateDir)?.owner;
    if (owner?.pid === pid && stillRuns(owner)) return { pid, stateDir: o.stateDir };
  }
  return undefined;
}

export function writeOwnerRecord(stateDir: string, record: OwnerRecord): void {
  writeFileAtomic(ownerRecordFile(stateDir), recordText(record), { overwrite: true, mode: 0o600 });
}

/** A start's first record: made only where there is none (link(2), atomically), so that of two
 * starts with one --state at once, one goes on and the other is refused, before either starts
 * a chain; where the one that lost would have taken the record of the one that runs with it. */
export function createOwnerRecord(stateDir: string, record: OwnerRecord, again = true): void {
  try {
    writeFileAtomic(ownerRecordFile(stateDir), recordText(record), { mode: 0o600 });
  } catch (error) {
    if (!(error instanceof AtomicWriteError) || error.code !== "EEXIST") throw error;
    const other = readOwnerRecord(stateDir)?.owner;
    // Not a record (a record is never seen half written): nothing that another start made.
    if (!other && again) {
      removeOwnerRecord(stateDir);
      createOwnerRecord(stateDir, record, false);
      return;
    }
    if (other && stillRuns(other)) throw alreadyRunning(other.pid, stateDir);
    throw new FatalError(
      `a record appeared in ${stateDir} meanwhile (another tls-everywhere starting): try again`,
    );
  }
}

export function alreadyRunning(pid: number, stateDir: string): FatalError {
  return new FatalError(`already running as pid ${pid} (${stateDir}): stop that one first`);
}

function recordText(record: OwnerRecord): string {
  return `${JSON.stringify(record)}\n`;
}

/** The record, or undefined when there is none or it is not one of ours. */
export function readOwnerRecord(stateDir: string): OwnerRecord | undefined {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(ownerRecordFile(stateDir), "utf8"));
  } catch {
    return undefined;
  }
  const r = data as Partial<OwnerRecord> | null;
  const isId = (v: unknown): v is ProcessId =>
    typeof v === "object" &&
    v !== null &&
    Number.isSafeInteger((v as ProcessId).pid) &&
    (v as ProcessId).pid > 1 &&
    typeof (v as ProcessId).since === "string";
  if (
    !isId(r?.owner) ||
    !Array.isArray(r.chains) ||
    !r.chains.every(isId) ||
    !Array.isArray(r.args) ||
    !r.args.every((a) => typeof a === "string")
  )
    return undefined;
  return { owner: r.owner, chains: r.chains, args: r.args };
}

/** Removes the record; with `owner`, only while it still names that process (not the record of
 * one that took over and started meanwhile). */
export function removeOwnerRecord(stateDir: string, owner?: ProcessId): void {
  const now = owner && readOwnerRecord(stateDir)?.owner;
  if (owner && !(now && sameProcess(now, owner))) return;
  rmSync(ownerRecordFile(stateDir), { force: true });
}

/** Sends SIGTERM to each process still running, waits up to `graceMs` for them to end, then
 * SIGKILL; resolves with the pids that were running. */
export async function stopProcesses(ids: readonly ProcessId[], graceMs = 10_000) {
  const running = ids.filter(stillRuns);
  for (const id of running) signal(id.pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (running.some(stillRuns) && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 50));
  for (const id of running.filter(stillRuns)) signal(id.pid, "SIGKILL");
  return running.map((id) => id.pid);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Ended meanwhile.
  }
}
