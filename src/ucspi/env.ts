// The environment as stages pass it along: a plain map, copied at each hand-off.
//
// An ordinary object, not one without a prototype: V8 keeps a spread copy of an ordinary
// object in fast mode, which costs about 0.2 µs and a few hundred bytes per connection, where a
// null-prototype copy is a hash table (6 µs and 7 KiB per connection with 40 variables, a
// third of all tcpserver allocated per plaintext connection). Variables are read by fixed names
// or with a prefix, never by a name from outside, so Object.prototype's members never answer
// for one; names from outside are written with setVar, which keeps `__proto__` a variable.
//
// Values (and names) are byte strings: one character per byte, as latin1 codes them. Unix
// environment entries are bytes, and djb's programs pass them on as they are (a rule value or
// an ident answer that is not UTF-8 must reach the program unchanged); the native spawn writes
// them back byte for byte. Text that a stage needs as Unicode: Buffer.from(value, "latin1").
import { readFileSync } from "node:fs";
import { encodeOs } from "./os-string.ts";

/** A variable whose value is undefined is unset: unsetVar leaves the object's shape as it was
 * (a `delete` would make it a hash table again), and envList skips it. */
export type Env = Record<string, string | undefined>;

/**
 * The environment this process started with, as byte strings: read raw from
 * /proc/self/environ where there is one, else re-encoded from the decoded `fallback`.
 */
export function startEnv(fallback: Readonly<Record<string, string | undefined>>): Env {
  const env: Env = {};
  try {
    for (const entry of readFileSync("/proc/self/environ").toString("latin1").split("\0")) {
      const eq = entry.indexOf("=");
      const name = entry.slice(0, eq);
      // The first of two entries with one name wins, as getenv() finds it.
      if (eq > 0 && !Object.hasOwn(env, name)) setVar(env, name, entry.slice(eq + 1));
    }
  } catch {
    for (const [name, value] of Object.entries(fallback)) {
      if (value !== undefined) setVar(env, toBytes(name), toBytes(value));
    }
  }
  // The launcher's word to this process of which fds it found closed (src/cli/main.ts), not a
  // variable of the environment it was given: no program of ours passes it on.
  delete env["UCSPI_FD_NOT_OPEN"];
  return copyEnv(env);
}

/** env[name] = value for a name from outside (an environment, a rule): `__proto__` included. */
export function setVar(env: Env, name: string, value: string): void {
  if (name === "__proto__")
    Object.defineProperty(env, name, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  else env[name] = value;
}

const ASCII = /^[\x00-\x7f]*$/;

/** A JavaScript string as a byte string (its UTF-8 bytes, one character each; a byte that a
 * command-line word escaped is that byte, src/ucspi/os-string.ts). */
export function toBytes(text: string): string {
  // ASCII is its own bytes: most values (a session's facts, each handshake) need no Buffer.
  return ASCII.test(text) ? text : encodeOs(text).toString("latin1");
}

/** A copy that the next stage may change freely, in fast mode whatever `env` is in (a spread
 * defines own properties, `__proto__` too). */
export function copyEnv(env: Readonly<Env>): Env {
  return { ...env };
}

/** Unsets a variable (see Env). */
export function unsetVar(env: Env, name: string): void {
  if (env[name] !== undefined) env[name] = undefined;
}

/** Sets a variable, or unsets it when value is undefined (see Env). */
export function putVar(env: Env, name: string, value: string | undefined): void {
  if (value === undefined) unsetVar(env, name);
  else setVar(env, name, value);
}

/** A fast-mode copy of env in which each of `names` is a property, unset where env has no
 * value: copies of it that set those names change values, not the object's shape. */
export function withNames(env: Readonly<Env>, names: readonly string[]): Env {
  const shaped = copyEnv(env);
  for (const name of names) if (!Object.hasOwn(shaped, name)) shaped[name] = undefined;
  return copyEnv(shaped);
}

/** Sets and unsets, in that order, as djb's tcpserver does before it execs. */
export function applyEnv(env: Env, change: { set: [string, string][]; unset: string[] }): void {
  for (const name of change.unset) unsetVar(env, name);
  for (const [name, value] of change.set) setVar(env, name, value);
}

/** `NAME=value` strings for execve. */
export function envList(env: Readonly<Env>): string[] {
  const list: string[] = [];
  for (const key in env) {
    const value = env[key];
    if (value !== undefined) list.push(`${key}=${value}`);
  }
  return list;
}

/** The full names by the short one, made once: a name put together on each call is a new
 * string to hash for every lookup, several times a connection. */
const TCP_NAMES = new Map<string, readonly [string, string]>();

/** One of the connection's variables by the name after TCP (`REMOTEIP`...): the TCP6* one
 * for an IPv6 connection (PROTO=TCP6), as Debian's ucspi-tcp-ipv6 sets them. */
export function tcpVar(env: Readonly<Env>, name: string): string | undefined {
  let names = TCP_NAMES.get(name);
  if (!names) TCP_NAMES.set(name, (names = [`TCP${name}`, `TCP6${name}`]));
  return env[names[env["PROTO"] === "TCP6" ? 1 : 0]];
}

/** The client's address as the start of a log line (`1.2.3.4: `), or nothing without one. */
export function clientPrefix(env: Readonly<Env>): string {
  const ip = tcpVar(env, "REMOTEIP");
  return ip ? `${ip}: ` : "";
}
