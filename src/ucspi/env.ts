// The environment as stages pass it along: a plain map, copied at each hand-off.

export type Env = Record<string, string>;

/** A copy that the next stage may change freely. */
export function copyEnv(env: Readonly<Env>): Env {
  const out: Env = Object.create(null) as Env;
  for (const key of Object.keys(env)) out[key] = env[key] ?? "";
  return out;
}

/** Sets and unsets, in that order, as djb's tcpserver does before it execs. */
export function applyEnv(env: Env, change: { set: [string, string][]; unset: string[] }): void {
  for (const name of change.unset) delete env[name];
  for (const [name, value] of change.set) env[name] = value;
}

/** `NAME=value` strings for execve. */
export function envList(env: Readonly<Env>): string[] {
  return Object.keys(env).map((key) => `${key}=${env[key] ?? ""}`);
}
