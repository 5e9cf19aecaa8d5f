// Processes as /proc shows them (children, zombies included) and how a test ends a tree of
// them. Imports nothing of the other helpers, so that every helper can use it.
import type { ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

export interface ProcInfo {
  pid: number;
  /** R, S, D, Z (zombie), ... */
  state: string;
  comm: string;
}

/** The processes whose parent is `pid` (zombies included), from /proc/N/stat. */
export function childrenOf(pid: number): ProcInfo[] {
  const found: ProcInfo[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "latin1");
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ...; comm may hold spaces and parentheses.
    const close = stat.lastIndexOf(")");
    const [state, ppid] = stat.slice(close + 2).split(" ");
    if (Number(ppid) === pid) {
      found.push({
        pid: Number(entry),
        state: state ?? "?",
        comm: stat.slice(stat.indexOf("(") + 1, close),
      });
    }
  }
  return found;
}

/** Every descendant of `pid` (children, their children, ...). */
export function descendantsOf(pid: number): ProcInfo[] {
  const all: ProcInfo[] = [];
  const queue = [pid];
  for (let i = 0; i < queue.length && i < 10_000; i++) {
    for (const child of childrenOf(queue[i] as number)) {
      all.push(child);
      queue.push(child.pid);
    }
  }
  return all;
}

/** The command line of a process ("" once it is gone). */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

/** Whether a process is there and not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** After a failed test: SIGKILL for a child that is still there, everything below it, and the
 * processes seen below it before (`known`) that are still there. */
export function killTree(child: ChildProcess, known: readonly ProcInfo[] = []): void {
  const running = child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  const below = running ? descendantsOf(child.pid as number) : [];
  for (const p of [...below, ...known]) {
    if (!alive(p.pid)) continue;
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  if (running) child.kill("SIGKILL");
}
