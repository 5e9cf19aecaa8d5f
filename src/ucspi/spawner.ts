// Where a server that holds many connections spawns its programs: in ucspi-spawner, a small
// helper process (src/native/spawner.c), so that each spawn does not copy and close the
// thousands of fds this process holds (DESIGN.md section 3). Falls back to spawning here.
import { availableParallelism } from "node:os";
import { causeText } from "./errors.ts";
import { builtFile, native } from "./native.ts";

type OnSpawned = (error: Error | null, pid: number | undefined) => void;
type OnExit = (wstatus: number) => void;

/** One posix_spawn takes a spawner about 0.6 ms: one per core (up to 4) keeps a burst of
 * connections from queueing behind a single one. */
const MAX_SPAWNERS = 4;
let spawners = Math.min(MAX_SPAWNERS, availableParallelism());

/** A server whose connections only run programs (no stage of ours in this process, so no
 * handshake thread either) spawns with two spawners a core, its share of the cores under
 * `processes` workers: a spawner waits in posix_spawn until its child has exec'd, and with one
 * a core the spawns queued behind each other while a core idled (plain connections at c=16 on
 * 2 cores: 4 spawners did 3.9 % more than 2, at no more CPU; with tlsd in the process 4 did 3 %
 * fewer handshakes, the handshake thread having the spare core already). Before the first
 * spawn. */
export function spawnersForProgramsOnly(processes: number): void {
  const share = Math.floor((2 * availableParallelism()) / Math.max(1, processes));
  spawners = Math.min(MAX_SPAWNERS, Math.max(spawners, share));
}

/** "off": not started yet (or one lost: start another); "broken": cannot start, do not retry. */
let state: "off" | "running" | "broken" = "off";

/**
 * Spawns file with fdPairs applied, its fds from closeFrom up closed, in the spawner when it
 * can serve the request (a server-side child: fds 0 and 1 given, the rest closed), else in
 * libuv's threadpool. Same callbacks either way; the pairs' fds must stay open until onSpawned.
 */
export function spawnOffLoop(
  file: string,
  argv: readonly string[],
  envp: readonly string[],
  fdPairs: readonly number[],
  closeFrom: number,
  warn: (message: string) => void,
  onSpawned: OnSpawned,
  onExit: OnExit,
): void {
  if (
    servable(fdPairs, closeFrom) &&
    started(warn) &&
    native().spawnerSpawn(file, argv, envp, fdPairs, onSpawned, onExit)
  )
    return;
  native().spawnAsync(file, argv, envp, fdPairs, closeFrom, onSpawned, onExit);
}

/** The spawner's children get fds 0-2 and the targets, nothing else of ours. */
function servable(fdPairs: readonly number[], closeFrom: number): boolean {
  const targets = fdPairs.filter((_, i) => i % 2 === 1);
  return closeFrom >= 0 && closeFrom <= 3 && targets.includes(0) && targets.includes(1);
}

function started(warn: (message: string) => void): boolean {
  if (state === "off") {
    try {
      native().startSpawner(builtFile("ucspi-spawner"), spawners, () => {
        state = "off";
        warn("ucspi-spawner exited; the programs it ran are reported as status 111");
      });
      state = "running";
    } catch (error) {
      state = "broken";
      warn(`spawning in this process: unable to start ucspi-spawner: ${causeText(error)}`);
    }
  }
  return state === "running";
}
