// What a process must take down before it goes on SIGTERM: what it set up outside itself and
// would otherwise leave behind (an order's dns-01 record in the zone, its http-01 file, its
// claim on the name in CERTDIR, which would make every tlsd of that CERTDIR wait until the
// claim is stale). A module registers such work while it has any; only the programs' cli.ts
// run it (stopOnTerm in src/cli/main.ts, and tcpserver's SIGTERM), so no stage handles the signal.

/** Takes down what its module set up; says itself what it could not. */
export type StopHook = () => Promise<void>;

const hooks = new Set<StopHook>();

/** Registers `hook`; the function returned takes it off again, once its work is gone. */
export function onStop(hook: StopHook): () => void {
  hooks.add(hook);
  return () => {
    hooks.delete(hook);
  };
}

/** Runs every hook registered now, all at once; resolves when each is done, or after `boundMs`
 * (a supervisor waits only so long before SIGKILL). */
export async function stopAll(boundMs: number): Promise<void> {
  if (hooks.size === 0) return;
  const running = [...hooks].map((hook) => hook().catch(() => undefined));
  hooks.clear();
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, boundMs)));
  await Promise.race([Promise.all(running), bound]);
  clearTimeout(timer);
}

/** How long a stop waits for its hooks: a DNS provider's API removing a record takes seconds. */
export const STOP_HOOKS_MS = 10_000;
