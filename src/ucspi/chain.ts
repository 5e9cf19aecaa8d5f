// Runs "the rest of argv" for a stage: one of our programs in this process, or the user's
// program spawned with the connection as its fds 0/1 (server) or 6/7 (client).
import { Socket } from "node:net";
import { envList } from "./env.ts";
import type { Env } from "./env.ts";
import { reportError } from "./main.ts";
import { native } from "./native.ts";
import { findProgram } from "./path-search.ts";
import { ourStage } from "./programs.ts";
import { relay } from "./relay.ts";
import type { Connection, Side, StageContext } from "./stage.ts";

export interface ChainOptions {
  side: Side;
  log: (line: string) => void;
  /** Close every fd from 3 up in the spawned program (tcpserver's children inherit nothing). */
  closeOthers: boolean;
  /** Called with the pid once a program is spawned (tcpserver logs it). */
  onSpawn?: (pid: number) => void;
}

/** A raw wait status for an exit code, as wait() would report it. */
export function exitStatus(code: number): number {
  return (code & 0xff) << 8;
}

/**
 * Runs argv with env on connection. Resolves with the raw wait status of whatever ran.
 * Throws ProgramNotFound (with a djb errno code) when the program cannot be run.
 */
export async function runChain(
  argv: readonly string[],
  env: Env,
  connection: Connection,
  options: ChainOptions,
): Promise<number> {
  const name = argv[0] ?? "";
  const file = findProgram(name, env["PATH"]);
  const stage = ourStage(file);
  if (stage) return runStage(await stage, [...argv], env, connection, options);
  return spawnOnConnection(file, argv, env, connection, options);
}

async function runStage(
  stage: { run(ctx: StageContext): Promise<number> },
  argv: string[],
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
    next: (nextArgv, nextEnv, nextConnection) =>
      runChain(nextArgv, nextEnv, nextConnection, {
        ...options,
        onSpawn: undefined,
        closeOthers: true,
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
): Promise<number> {
  const [read, write] = options.side === "server" ? [0, 1] : [6, 7];
  const spawn = (fd: number, onExit: (status: number) => void) => {
    const pid = native().spawn(
      file,
      argv,
      envList(env),
      [fd, read, fd, write],
      options.closeOthers ? 3 : -1,
      onExit,
    );
    options.onSpawn?.(pid);
  };
  if (connection.fd !== undefined) {
    // The raw socket itself: no relay, no copy.
    const fd = connection.fd;
    return new Promise((resolve) => spawn(fd, resolve));
  }
  return spawnOnStream(connection, spawn);
}

/** A transformed connection (TLS) reaches the program through a socketpair and a relay. */
async function spawnOnStream(
  connection: Connection,
  spawn: (fd: number, onExit: (status: number) => void) => void,
): Promise<number> {
  const stream = connectionStream(connection);
  const [ours, theirs] = native().socketPair();
  let onExit: (status: number) => void = () => {};
  const exited = new Promise<number>((resolve) => (onExit = resolve));
  try {
    spawn(theirs, onExit);
  } catch (error) {
    native().close(ours);
    throw error;
  } finally {
    native().close(theirs);
  }
  const program = new Socket({ fd: ours, readable: true, writable: true, allowHalfOpen: true });
  const programDone = new Promise<void>((resolve) => {
    program.once("end", resolve);
    program.once("close", resolve);
  });
  const relayed = relay(stream, program);
  const status = await exited;
  // As with a program on the socket itself: once it has exited and its output is all out, the
  // connection is over, whatever the peer still sends.
  await Promise.race([relayed, programDone]);
  program.destroy();
  return status;
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
