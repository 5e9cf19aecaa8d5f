// The Stage interface: how one of our programs runs inside another one's process.
//
// A stage gets its network side as a Connection, its environment and argv, does its one job
// and hands the rest of argv to `next`, which either runs another of our stages in the same
// process or spawns the user's program. Stages never touch process globals.
import type { Duplex } from "node:stream";
import type { Env } from "./env.ts";
import type { DropPrivileges } from "./privileges.ts";
import type { ProxyHeader } from "../proxy/index.ts";
import type { StopSignal } from "./stop-signal.ts";

/** The network side of a stage: a raw socket fd (server fds 0/1, client 6/7), a stream, or both. */
export interface Connection {
  /** A socket or pipe fd that a spawned program can take over as it is. When it is set, a
   * program is spawned on it directly, so a stage that transforms the bytes, or has read some
   * of them, passes on a new Connection with only `stream`. */
  fd?: number;
  /** The bytes to and from the peer, once a stage has needed them as a stream. */
  stream?: Duplex;
  /** The PROXY header tcpserver --proxy read (real addresses, and our resume record TLV). */
  proxy?: ProxyHeader;
  /** Cuts the connection with a TCP reset, where `stream` is a stage's own (a TLS session)
   * over a socket that the stage knows, or `fd` one end of a stage's socket pair (which has no
   * reset: starttls-wrapper's, which passes it on to its client): a relay passes its other
   * side's reset on with it. */
  reset?: () => void;
  /** More fds for a spawned program, each under its own number (3 and up), close-on-exec
   * cleared in the program: tlsd -n's SSLCTLFD, SSLREADFD and SSLWRITEFD. They are handed over
   * with the connection: runChain takes them off it, closes this process's copies as soon as
   * the program is spawned (or could not be), and never gives them to one of our stages run
   * in-process, which could not use them (closed before the stage runs). */
  extraFds?: number[];
  /** Offered with `fd`, one end of a stage's socket pair, by a stage that relays the pair's
   * other end itself (tlsd's native engine): the peer's bytes then go to and from `socket`, a
   * stage's own (tcpforward's service), with no pair in between, both ways, half-closes passed
   * on. `fd` is closed; resolves when both directions are done with the first failure's errno
   * and side (0: the peer, 1: `socket`), or [0, 0], as `relay()` does; the caller closes
   * `socket`. */
  relayTo?: (socket: number) => Promise<[errno: number, side: number]>;
}

/** Which UCSPI side the connection is on: server programs use fds 0/1, clients fds 6/7. */
export type Side = "server" | "client";

export interface NextHooks {
  /** Its stop ends the program the chain spawned (SIGTERM): a stage that is done with it
   * (starttls-wrapper, once the client is handed over) says so. */
  stop?: StopSignal;
  /** Called with the pid once the program is spawned (not for a stage run in this process). */
  onSpawn?: (pid: number) => void;
  /** Called before next() returns when a program is being spawned off the event loop (under
   * tcpserver): it may run, and write, before onSpawn comes. */
  onSpawning?: () => void;
  /** Called when the connection refuses what a program spawned on a stream still writes (the
   * peer is gone): the chain has closed the program's socket, so it learns at its next write
   * (EPIPE), and the stage says so. A stage run in this process says it in its own words. */
  onPeerGone?: () => void;
}

export interface StageContext {
  /** argv of this program; argv[0] is its name. The same array for every connection a
   * chain serves (tcpserver's program, a route of tls-sniff): see stageOptions. */
  argv: readonly string[];
  /** Its environment: its own copy, to change and pass on. */
  env: Env;
  connection: Connection;
  side: Side;
  /** Where `prog: warning: ...` lines go (fd 2). */
  log: (line: string) => void;
  /** Applies TLS_UID/TLS_GID as the process running the stage allows (see privileges.ts). */
  dropPrivileges: DropPrivileges;
  /** Runs the rest of the chain; resolves with its raw wait status. */
  next(
    argv: readonly string[],
    env: Env,
    connection: Connection,
    hooks?: NextHooks,
  ): Promise<number>;
}

export interface Stage {
  /** Resolves with a raw wait status, as wait() reports a process's end: exit code × 256, or
   * the number of the signal that ended the program that ran last in the chain. */
  run(ctx: StageContext): Promise<number>;
  /** At tcpserver's start, before it drops privileges and accepts: reads `argv` (without the
   * program's name) and `env` as run() will, loads what every connection needs (certificates, keys) so that run() finds it
   * loaded, and throws for a configuration that could never serve (UsageError, FatalError);
   * `warn` takes one line about one that will serve badly. */
  prepare?(
    argv: readonly string[],
    env: Readonly<Env>,
    warn: (what: string) => void,
  ): void | Promise<void>;
  /** The command lines it may run next on a connection (its program, its routes), read from
   * `argv` (without the program's name): tcpserver prepares them at its start as well, so that
   * a tlsd behind tls-sniff loads its keys before privileges go, as one run first does. */
  chainsAfter?(argv: readonly string[]): readonly (readonly string[])[];
}
