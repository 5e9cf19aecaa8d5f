// The environment as stages pass it along: a plain map, copied at each hand-off.
//
// Values (and names) are byte strings: one character per byte, as latin1 codes them. Unix
// environment entries are bytes, and djb's programs pass them on as they are (a rule value or
// an ident answer that is not UTF-8 must reach the program unchanged); the native spawn writes
// them back byte for byte. Text that a stage needs as Unicode: Buffer.from(value, "latin1").
import { readFileSync } from "node:fs";

export type Env = Record<string, string>;

/**
 * The environment this process started with, as byte strings: read raw from
 * /proc/self/environ where there is one, else re-encoded from the decoded `fallback`.
 */
export function startEnv(fallback: Readonly<Record<string, string | undefined>>): Env {
  const env: Env = Object.create(null) as Env;
  try {
    for (const entry of readFileSync("/proc/self/environ").toString("latin1").split("\0")) {
      const eq = entry.indexOf("=");
      if (eq > 0) env[entry.slice(0, eq)] ??= entry.slice(eq + 1);
    }
    return env;
  } catch {
    for (const [name, value] of Object.entries(fallback)) {
      if (value !== undefined) env[toBytes(name)] = toBytes(value);
    }
    return env;
  }
}

/** A JavaScript string as a byte string (its UTF-8 bytes, one character each). */
export function toBytes(text: string): string {
  return Buffer.from(text, "utf8").toString("latin1");
}

/** A copy that the next stage may change freely. */
export function copyEnv(env: Readonly<Env>): Env {
  return Object.assign(Object.create(null) as Env, env);
}

/** Sets and unsets, in that order, as djb's tcpserver does before it execs. */
export function applyEnv(env: Env, change: { set: [string, string][]; unset: string[] }): void {
  for (const name of change.unset) delete env[name];
  for (const [name, value] of change.set) env[name] = value;
}

/** `NAME=value` strings for execve. */
export function envList(env: Readonly<Env>): string[] {
  const list: string[] = [];
  for (const key in env) list.push(`${key}=${env[key] ?? ""}`);
  return list;
}

/** One of the connection's variables by the name after TCP (`REMOTEIP`...): the TCP6* one
 * for an IPv6 connection (PROTO=TCP6), as Debian's ucspi-tcp-ipv6 sets them. */
export function tcpVar(env: Readonly<Env>, name: string): string | undefined {
  return env[`${env["PROTO"] === "TCP6" ? "TCP6" : "TCP"}${name}`];
}

/** The client's address as the start of a log line (`1.2.3.4: `), or nothing without one. */
export function clientPrefix(env: Readonly<Env>): string {
  const ip = tcpVar(env, "REMOTEIP");
  return ip ? `${ip}: ` : "";
}
