// The environment as stages pass it along: a plain map, copied at each hand-off.

export type Env = Record<string, string>;

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
