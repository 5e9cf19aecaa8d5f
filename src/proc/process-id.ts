// A process named so that it is never taken for another: its pid and its start time (clock
// ticks after boot, /proc/PID/stat), since the kernel gives an ended process's pid to the next
// program. tls-everywhere's owner record and the ACME ledger's claims name their processes so.
import { readFileSync, readlinkSync, statSync } from "node:fs";

/** One process: its pid and its start time (clock ticks after boot, /proc/PID/stat). */
export interface ProcessId {
  pid: number;
  since: string;
}

/** The process `pid` now, or undefined when there is none, it has ended (a zombie not yet
 * reaped), or /proc cannot tell. */
export function processId(pid: number): ProcessId | undefined {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  const since = startTimeOf(stat);
  return since === undefined ? undefined : { pid, since };
}

/** A running process's start time from its /proc/PID/stat line; undefined when it has ended. */
export function startTimeOf(stat: string): string | undefined {
  // The name in parentheses may hold spaces and parentheses: the fields follow the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const [state, since] = [fields[0], fields[19]];
  if (state === "Z" || state === "X" || !since || !/^[0-9]+$/.test(since)) return undefined;
  return since;
}

/** Whether the very process the record names still runs. */
export function stillRuns(id: ProcessId): boolean {
  const now = processId(id.pid);
  return now !== undefined && sameProcess(now, id);
}

export function sameProcess(a: ProcessId, b: ProcessId): boolean {
  return a.pid === b.pid && a.since === b.since;
}

/** Where a pid names a process: this boot of this machine, in this pid namespace (a container
 * has its own). Undefined when /proc cannot say. */
export function pidScope(): string | undefined {
  try {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "latin1").trim();
    return `${boot}/${readlinkSync("/proc/self/ns/pid").replace(/\D/g, "")}`;
  } catch {
    return undefined;
  }
}

/** This process (without `process`, which stages leave alone). */
export function ownProcessId(): ProcessId | undefined {
  try {
    return processId(Number(readlinkSync("/proc/self")));
  } catch {
    return undefined;
  }
}

/** The effective uid of this process: /proc/self is owned by it. */
export function ownUid(): number | undefined {
  try {
    return statSync("/proc/self").uid;
  } catch {
    return undefined;
  }
}
