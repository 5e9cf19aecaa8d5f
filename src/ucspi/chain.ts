// Runs "the rest of argv" for a stage: one of our programs in this process, or the user's
// program spawned with the connection as its fds 0/1 (server) or 6/7 (client).
import { Socket } from "node:net";
import { envList } from "./env.ts";
import type { Env } from "./env.ts";
import { reportError } from "../cli/main.ts";
import { native } from "./native.ts";
import { ProgramNotFound, findProgram } from "./path-search.ts";
import type { DropPrivileges } from "./privileges.ts";
import { ourStage } from "./programs.ts";
import { relay } from "../stream/relay.ts";
import { sharedReadSocket } from "../stream/shared-read.ts";
import { spawnOffLoop } from "./spawner.ts";
import type { Feed } from "../stream/relay.ts";
import type { Connection, Side, Stage, StageContext } from "./stage.ts";
import { eitherStop } from "./stop-signal.ts";
import type { StopSignal } from "./stop-signal.ts";

export interface ChainOptions {
  side: Side;
  log: (line: string) => void;
  /** Close every fd from 3 up in the spawned program (tcpserver's children inherit nothing). */
  closeOthers: boolean;
  /** How a stage may apply TLS_UID/TLS_GID in this process. */
  dropPrivileges: DropPrivileges;
  /** Called with the pid once a program is spawned (tcpserver logs it). */
  onSpawn?: (pid: number) => void;
  /** Spawn off the event loop (tcpserver, whose loop serves other connections meanwhile): in
   * ucspi-spawner, or in libuv's threadpool; onSpawn then comes later, not before runChain
   * returns. */
  asyncSpawn?: boolean;
  /** Where a warning about the spawn path goes (tcpserver's log). */
  warn?: (message: string) => void;
  /** Called before runChain returns when it is to spawn a program (not run a stage here). */
  onSpawning?: () => void;
  /** See NextHooks.onPeerGone. */
  onPeerGone?: () => void;
  /** Called when a program, this one or one a stage runs later in the chain, cannot be run
   * (tcpserver --metrics counts it). */
  onRunFailure?: () => void;
  /** When it stops, a spawned program that still runs gets SIGTERM, as does one that a stage
   * run in this process spawned. */
  stop?: StopSignal;
}

const SIGTERM = 15;
const SIGKILL = 9;
/** How long a stopped program has between SIGTERM and SIGKILL. */
const STOP_GRACE_MS = 2000;

/** A raw wait status for an exit code, as wait() would report it. */
export function exitStatus(code: number): number {
  return (code & 0xff) << 8;
}

/**
 * Runs argv with env on connection. Resolves with the raw wait status of whatever ran.
 * Rejects with ProgramNotFound (with a djb errno code) when the program cannot be run; never
 * throws (not async itself, so that a stage already loaded starts in this turn).
 */
export function runChain(
  argv: readonly string[],
  env: Env,
  connection: Connection,
  options: ChainOptions,
): Promise<number> {
  try {
    return startChain(argv, env, connection, options);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** runChain, throwing what it cannot start. */
function startChain(
  argv: readonly string[],
  env: Env,
  connection: Connection,
  options: ChainOptions,
): Promise<number> {
  const extraFds = takeExtraFds(connection);
  let file: string;
  let stage: ReturnType<typeof ourStage>;
  try {
    file = findProgram(argv[0] ?? "", env["PATH"]);
    stage = ourStage(file);
  } catch (error) {
    closeFds(extraFds);
    options.onRunFailure?.();
    throw error;
  }
  if (stage) {
    // Fds of this process would mean nothing to a stage running in it.
    closeFds(extraFds);
    return stage instanceof Promise
      ? stage.then((loaded) => runStage(loaded, argv, env, connection, options))
      : runStage(stage, argv, env, connection, options);
  }
  const ran = spawnOnConnection(file, argv, env, connection, options, extraFds);
  if (!options.onRunFailure) return ran;
  return ran.catch((error: unknown) => {
    options.onRunFailure?.();
    throw error;
  });
}

/**
 * tcpserver's start: when the program is one of our stages that has a prepare step, runs it
 * (see Stage.prepare), and so on for each command line the stage may run next (its
 * chainsAfter). Its failures are thrown, named after the stage (StageConfigError). Resolves
 * with whether the program is one of our stages.
 */
export async function prepareChain(
  argv: readonly string[],
  env: Readonly<Env>,
  log: (line: string) => void,
): Promise<boolean> {
  let stage: Stage | undefined;
  try {
    stage = await ourStage(findProgram(argv[0] ?? "", env["PATH"]));
  } catch {
    return false; // Not found now: each connection says so, as djb's tcpserver does.
  }
  if (!stage) return false;
  const name = (argv[0] ?? "").slice((argv[0] ?? "").lastIndexOf("/") + 1);
  let after: readonly (readonly string[])[];
  try {
    await stage.prepare?.(argv.slice(1), env, (what) => log(`${name}: warning: ${what}\n`));
    after = stage.chainsAfter?.(argv.slice(1)) ?? [];
  } catch (error) {
    throw new StageConfigError(name, error);
  }
  for (const chain of after) if (chain.length > 0) await prepareChain(chain, env, log);
  return true;
}

/** A stage's configuration refused at start-up: `stage` names it in the log line. */
export class StageConfigError extends Error {
  readonly stage: string;
  constructor(stage: string, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.stage = stage;
  }
}

const NO_FDS: readonly number[] = [];

/** The connection's extra fds (see Connection.extraFds), which the chain owns from now on. */
function takeExtraFds(connection: Connection): readonly number[] {
  const fds = connection.extraFds;
  // Nothing to take: the object keeps its shape (a delete would make it a hash table).
  if (fds === undefined) return NO_FDS;
  connection.extraFds = undefined;
  if (fds.some((fd) => fd < 3)) {
    closeFds(fds.filter((fd) => fd >= 3));
    throw new Error(`extra fds must be 3 and up, not ${fds.join(",")}`);
  }
  return fds;
}

function closeFds(fds: readonly number[]): void {
  for (const fd of fds) native().close(fd);
}

async function runStage(
  stage: { run(ctx: StageContext): Promise<number> },
  argv: readonly string[],
  env: Env,
  connection: Connection,
  options: ChainOptions,
): Promise<number> {
  const ctx: StageContext = {
    argv,
    env,
    connection,
    side: options.side,
    log: options.log,
    dropPrivileges: options.dropPrivileges,
    next: (nextArgv, nextEnv, nextConnection, hooks) =>
      runChain(nextArgv, nextEnv, nextConnection, {
        ...options,
        closeOthers: true,
        // A stop for this chain (tcpserver --drain's bound) ends what its stages spawn too.
        stop: eitherStop(options.stop, hooks?.stop),
        onSpawn: hooks?.onSpawn,
        onSpawning: hooks?.onSpawning,
        onPeerGone: hooks?.onPeerGone,
      }),
  };
  try {
    return await stage.run(ctx);
  } catch (error) {
    return exitStatus(reportError(argv[0] ?? "", error, options.log));
  }
}

function spawnOnConnection(
  file: string,
  argv: readonly string[],
  env: Env,
  connection: Connection,
  options: ChainOptions,
  extraFds: readonly number[],
): Promise<number> {
  const [read, write] = options.side === "server" ? [0, 1] : [6, 7];
  // Extra fds keep their numbers: the pairs never overwrite one another's source.
  const extra = extraFds.flatMap((fd) => [fd, fd]);
  // Resolves once the program runs (onSpawn called), rejects when it cannot be run. The fds it
  // is given stay open until then; the program has its own copies after.
  const spawn = (fds: ProgramFds, onExit: (status: number) => void): Promise<void> => {
    const stop = options.stop;
    let exited = false;
    let pid = 0;
    // Until its exit is reported the child is not reaped, so its pid is still its own. One
    // that does not end on SIGTERM (wedged in its exit handlers, say) gets SIGKILL.
    let killer: NodeJS.Timeout | undefined;
    let unhear: (() => void) | undefined;
    function terminate() {
      if (exited) return;
      native().kill(pid, SIGTERM);
      killer = setTimeout(() => {
        if (!exited) native().kill(pid, SIGKILL);
      }, STOP_GRACE_MS);
    }
    const exit = (status: number) => {
      exited = true;
      clearTimeout(killer);
      unhear?.();
      onExit(status);
    };
    const started = (spawnedPid: number) => {
      pid = spawnedPid;
      if (stop?.stopped) terminate();
      else unhear = stop?.onStop(terminate);
      options.onSpawn?.(pid);
    };
    // posix_spawn's errno (a path that names nothing, not executable...), named as djb does.
    const named = (error: unknown) => {
      const code = (error as { code?: unknown }).code;
      return typeof code === "string" ? new ProgramNotFound(argv[0] ?? file, code) : error;
    };
    const moved = fds.write === read && fds.read === write ? native().dup(fds.write) : undefined;
    const pairs = programPairs({ ...fds, write: moved ?? fds.write }, read, write).concat(extra);
    const closeFrom = options.closeOthers ? 3 : -1;
    const done = new Promise<void>((resolve, reject) => {
      if (!options.asyncSpawn) {
        let spawnedPid: number;
        try {
          spawnedPid = native().spawn(file, argv, envList(env), pairs, closeFrom, exit);
        } catch (error) {
          throw named(error);
        }
        started(spawnedPid);
        resolve();
        return;
      }
      spawnOffLoop(
        file,
        argv,
        envList(env),
        pairs,
        closeFrom,
        options.warn ?? (() => {}),
        (error, spawnedPid) => {
          if (error) return reject(named(error));
          started(spawnedPid ?? 0);
          resolve();
        },
        exit,
      );
      options.onSpawning?.();
    });
    // The program has its own copies of the extra fds now (or never will).
    return done.finally(() => closeFds(moved === undefined ? extraFds : [...extraFds, moved]));
  };
  if (connection.fd !== undefined) {
    // The raw socket itself: no relay, no copy.
    const fd = connection.fd;
    let onExit: (status: number) => void = () => {};
    const exited = new Promise<number>((resolve) => (onExit = resolve));
    return spawn({ read: fd, write: fd }, onExit).then(() => exited);
  }
  let called = false;
  const spawnOnce = (fds: ProgramFds, onExit: (status: number) => void) => {
    called = true;
    return spawn(fds, onExit);
  };
  // A client program (fds 6/7) gets two descriptors, as s6-tlsc gives it two pipes, so that
  // closing 7 alone is an EOF (`exec 7>&-`). A server program keeps one socket on 0 and 1, as
  // under djb's tcpserver: programs written for it may read and write either.
  const separate = options.side === "client";
  // Not when this side ended the connection (tcpserver --drain's bound): no peer left then.
  const peerGone = () => {
    if (!options.stop?.stopped) options.onPeerGone?.();
  };
  return spawnOnStream(connection, spawnOnce, separate, peerGone).catch((error: unknown) => {
    // Failed before spawning (no socketpair): the extra fds are still ours to close.
    if (!called) closeFds(extraFds);
    throw error;
  });
}

/** The fds a program reads and writes the connection on (one socket, or two). */
interface ProgramFds {
  read: number;
  write: number;
}

/** The dup2 pairs that put `fds` on the program's `read` and `write` numbers, in an order in
 * which no dup2 overwrites a source that a later one still needs (the caller moved one of two
 * exactly swapped fds out of the way). */
function programPairs(fds: ProgramFds, read: number, write: number): number[] {
  return fds.write !== read
    ? [fds.read, read, fds.write, write]
    : [fds.write, write, fds.read, read];
}

/** The kernel's send buffer for our end of the socketpair, in bytes (Linux doubles it, and caps
 * it at net.core.wmem_max). A program that reads a little late then does not push back on
 * every TLS record: measured, 1 GiB client → program went from 0.76-0.82× stunnel's rate to
 * 1.0× with this and batchWrites together. It costs nothing while the connection is idle. */
const PROGRAM_SNDBUF = 1 << 20;

/** A transformed connection (TLS) reaches the program through a socketpair and a relay. */
async function spawnOnStream(
  connection: Connection,
  spawn: (fds: ProgramFds, onExit: (status: number) => void) => Promise<void>,
  separate: boolean,
  onPeerGone?: () => void,
): Promise<number> {
  const stream = connectionStream(connection);
  // What we write, the program reads on `theirs`; with `separate`, what it writes comes back
  // on a pair of its own.
  const [ours, theirs] = native().socketPair(PROGRAM_SNDBUF);
  const [outOurs, outTheirs] = separate ? native().socketPair() : [ours, theirs];
  let onExit: (status: number) => void = () => {};
  const exited = new Promise<number>((resolve) => (onExit = resolve));
  // The relay starts at once, as the spawn does (in libuv's threadpool with asyncSpawn): it has
  // to be listening before the stream can end or close, or it would miss that. What it writes
  // before the program exists waits in the socketpair.
  const spawned = spawn({ read: theirs, write: outTheirs }, onExit);
  // Two handles on two fds of our end: when writing to a program that has exited fails, Node
  // destroys the writer, and the reader still delivers what the program wrote before it went.
  // The reader reads into the shared buffer (no new Buffer for each read, which in a 1 GiB
  // transfer cost as much CPU as the TLS encryption); the relay's feed takes the bytes on.
  const feed: Feed = {};
  const output = sharedReadSocket(outOurs, stream, feed, false);
  const input = new Socket({
    fd: separate ? ours : native().dup(ours),
    readable: false,
    writable: true,
    allowHalfOpen: true,
  });
  const programDone = new Promise<void>((resolve) => {
    output.once("end", resolve);
    output.once("close", resolve);
  });
  // A peer gone while the program still writes: both our fds of its socket close, so that its
  // next write fails (EPIPE) and it ends, as it would on a socket of its own.
  const stop = () => {
    output.destroy();
    input.destroy();
    onPeerGone?.();
  };
  const relayed = relay(stream, { source: output, sink: input, batchWrites: true, feed, stop });
  try {
    await spawned;
  } catch (error) {
    // Not run: the stage that called us ends the stream (tlsd destroys it at once).
    output.destroy();
    input.destroy();
    throw error;
  } finally {
    // The program has its own copies now (or never will).
    native().close(theirs);
    if (separate) native().close(outTheirs);
  }
  const status = await exited;
  // As with a program on the socket itself: once it has exited and its output is all out, the
  // connection is over, whatever the peer still sends.
  await Promise.race([relayed, programDone]);
  output.destroy();
  input.destroy();
  return status;
}

/** Closes a connection handed to a program that ran in this process: through its stream when
 * that program made one (the stream owns the fd then: closing the number under it makes
 * libuv abort the process, or closes whatever fd took the number since), else its fd. */
export function releaseConnection(connection: Connection): void {
  if (connection.stream) connection.stream.destroy();
  else if (connection.fd !== undefined) native().close(connection.fd);
}

/** The connection as a stream, made from its fd the first time a stage needs one. */
export function connectionStream(connection: Connection): NonNullable<Connection["stream"]> {
  if (!connection.stream) {
    if (connection.fd === undefined) throw new Error("connection has neither fd nor stream");
    // allowHalfOpen: the peer's FIN ends only our reading side; the stage still writes its
    // answers and half-closes when it is done, so half-close travels both ways.
    connection.stream = new Socket({
      fd: connection.fd,
      readable: true,
      writable: true,
      allowHalfOpen: true,
    });
  }
  return connection.stream;
}
