// tcpserver's SIGHUP: what our modules keep of files (certificates, the PATH search,
// /etc/services) is dropped or read again, so that the next connection sees the files as they
// are now. A module that keeps such things registers here when it is loaded, whoever loaded it
// (starttls-wrapper imports tlsd's stage itself); only tcpserver's cli.ts calls reloadAll, so no
// stage ever handles the signal.

/** Drops or re-reads what a module keeps; `log` takes whole lines (`tlsd: warning: ...\n`). */
export type ReloadHook = (log: (line: string) => void) => void;

const hooks = new Set<ReloadHook>();

export function onReload(hook: ReloadHook): void {
  hooks.add(hook);
}

/** Runs every hook registered so far. */
export function reloadAll(log: (line: string) => void): void {
  for (const hook of hooks) hook(log);
}
