// Dropping root: tcpserver's -u/-g, and TLS_UID/TLS_GID for tlsd and tlsc (s6-tlsd's names).
import { FatalError, causeText } from "./errors.ts";

export interface Ids {
  uid?: number;
  gid?: number;
}

/** How a stage asks for TLS_UID/TLS_GID to be applied, given by whoever runs it: a process of
 * its own drops to them (when it runs as root); one connection of a shared server cannot. */
export type DropPrivileges = (ids: Ids) => void;

/** Group first (also as the only supplementary group), then user; absent ids are left alone. */
export function setIds({ uid, gid }: Ids): void {
  try {
    if (gid !== undefined) {
      process.setgroups?.([gid]);
      process.setgid?.(gid);
    }
  } catch (error) {
    throw new FatalError(`unable to set gid: ${causeText(error)}`);
  }
  try {
    if (uid !== undefined) process.setuid?.(uid);
  } catch (error) {
    throw new FatalError(`unable to set uid: ${causeText(error)}`);
  }
}

const isRoot = (): boolean => process.geteuid?.() === 0;

/** For a process that is one connection (tlsd under a foreign tcpserver, tcpclient's chain). */
export const dropOwnPrivileges: DropPrivileges = (ids) => {
  if (isRoot()) setIds(ids);
};

/** For tcpserver's in-process chain: the process serves every connection, so one of them
 * cannot change its ids; as root that is an error rather than a silent root session. */
export const refuseSharedPrivileges: DropPrivileges = (ids) => {
  // The ids first: geteuid is a system call, and most chains ask for none.
  if ((ids.uid !== undefined || ids.gid !== undefined) && isRoot())
    throw new FatalError(
      "TLS_UID and TLS_GID cannot apply to one connection of a tcpserver running as root: use tcpserver -u and -g",
      100,
    );
};

/** TLS_UID and TLS_GID from an environment: decimal ids, or a fatal error naming the bad one. */
export function tlsIds(env: Readonly<Record<string, string | undefined>>): Ids {
  const ids: Ids = {};
  for (const [name, key] of [
    ["TLS_UID", "uid"],
    ["TLS_GID", "gid"],
  ] as const) {
    const value = env[name];
    if (value === undefined) continue;
    if (!/^[0-9]{1,10}$/.test(value) || Number(value) > 0xfffffffe)
      throw new FatalError(`${name} must be a numeric id, not '${value}'`, 100);
    ids[key] = Number(value);
  }
  return ids;
}
