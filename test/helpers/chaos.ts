// The chaos harness: random batches of misbehaving clients at once against one of our
// tcpservers (fast-check), then the checks that whatever happened to one connection ended that
// connection alone: tcpserver goes on serving, logs no internal error, every connection ended,
// and no fd or child is left.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import fc from "fast-check";
import { openFds, programsOf } from "./interop.ts";
import { waitFor } from "./server.ts";
import type { RunningServer } from "./server.ts";

/** A tcpserver under test, and how many connections were made to it so far. */
export interface Target {
  server: RunningServer;
  connections: number;
  /** What each client did, by its port (a port may serve several clients in turn), for the
   * message when a connection does not end. */
  said?: Map<number, Said[]>;
}

/** What a client is (`what`), and what it did and saw, in order (`steps`, filled as it goes). */
export interface Said {
  what: string;
  steps: string[];
}

/** Files `said` under the client's local `port` in `target`'s record (if it keeps one). */
export function fileSaid(target: Target, port: number, said: Said): void {
  target.said?.set(port, [...(target.said.get(port) ?? []), said]);
}

export interface Outcome {
  got: string;
  error?: string;
}

/** What a chaos run throws at a server. */
export interface Plan<C> {
  /** One client of a batch. */
  client: fc.Arbitrary<C>;
  /** Runs it against the server: what it read by its close. */
  run: (c: C) => Promise<Outcome>;
  /** Checks what a client that must be served got (the others have nothing to check). */
  check: (c: C, outcome: Outcome) => void;
  /** Whole exchanges that must work, before the batches (making what lasts) and after. */
  whole: () => Promise<void>;
  maxLength: number;
  numRuns: number;
}

/** Random batches of clients at once against `target` (and `behind`, the server it hands
 * clients over to, if any), then: every client that must be served was, tcpserver goes on
 * serving, logs no internal error, every connection ended, and no fd or child is left. */
export async function chaos<C>(target: Target, plan: Plan<C>, behind?: RunningServer) {
  const servers = [target.server, ...(behind ? [behind] : [])];
  try {
    await plan.whole();
    await settled(target);
    const fdsBefore = servers.map((s) => ownFds(s.child.pid as number));
    await fc.assert(
      fc.asyncProperty(
        fc.array(plan.client, { minLength: 1, maxLength: plan.maxLength }),
        async (batch) => {
          const outcomes = await Promise.all(batch.map((c) => plan.run(c)));
          for (const [i, c] of batch.entries()) plan.check(c, outcomes[i] as Outcome);
          for (const server of servers) stillServing(server);
        },
      ),
      { numRuns: plan.numRuns },
    );
    await plan.whole();
    await settled(target);
    if (behind)
      await waitFor(() => (/tcpserver: status: 0\/\d+\n$/.test(behind.log()) ? true : undefined));
    for (const [i, server] of servers.entries()) leftNothing(server, fdsBefore[i] ?? []);
  } finally {
    for (const server of servers) await server.stop();
  }
}

function stillServing(server: RunningServer): void {
  assert.equal(server.child.exitCode, null, `tcpserver ended:\n${server.log().slice(-3000)}`);
}

/** After the chaos: no internal error was logged, and no fd (but the pooled pipes) or child is
 * left of the connections. */
function leftNothing(server: RunningServer, fdsBefore: string[]): void {
  const pid = server.child.pid as number;
  assert.doesNotMatch(server.log(), /internal error|ERR_|node:/);
  const left = ownFds(pid).filter((fd) => !fdsBefore.includes(fd));
  // The addon's own epoll set is made the first time something waits in it (a PROXY header
  // that came after its connection, say), once for the process: not a connection's.
  const watchSet = left.findIndex((fd) => fd.endsWith(" anon_inode:[eventpoll]"));
  if (watchSet >= 0) left.splice(watchSet, 1);
  // The TLS engine's handshake threads tell the loop through an eventfd, made with them the
  // first time a handshake waits beside another (src/native/offload.c), once for the process.
  const threads = left.findIndex((fd) => fd.endsWith(" anon_inode:[eventfd]"));
  if (threads >= 0) left.splice(threads, 1);
  // libuv keeps /dev/null open read-only from its first TCP handle on (a spare fd to close
  // when accept meets EMFILE), once for the process: a handle made only by some connections
  // (a TLS socket of a client-first protocol's wrapper, say) shows it after the first batch.
  const spare = left.findIndex(
    (fd) => fd.endsWith(" /dev/null") && (flagsOf(pid, fd.split(" ")[0] ?? "") & 3) === 0,
  );
  if (spare >= 0) left.splice(spare, 1);
  assert.deepEqual(
    left,
    [],
    `fds left in ${server.child.spawnargs.join(" ")}: ${sockets(left)} ${fdInfo(pid, left)}`,
  );
  assert.deepEqual(programsOf(pid), [], "no child left");
}

/** The process's fds but the splice relay's pool of empty pipes, which it keeps on purpose
 * (src/native/relay.c, at most 64 pairs) and which grows with the connections at once. */
function ownFds(pid: number): string[] {
  const fds = [...openFds(pid)];
  const pipes = fds.filter(([, target]) => target.startsWith("pipe:"));
  assert.ok(pipes.length <= 2 * 64, `${pipes.length} pipes`);
  return fds
    .filter(([, target]) => !target.startsWith("pipe:"))
    .map(([fd, target]) => `${fd} ${target}`)
    .sort();
}

/** What the kernel says of the sockets among `fds` ("N socket:[inode]"): their TCP or UNIX
 * table lines, for a message. */
function sockets(fds: string[]): string {
  const tables = ["tcp", "tcp6", "unix"].map((t) => readFileSync(`/proc/net/${t}`, "latin1"));
  return fds
    .map((fd) => {
      const inode = /socket:\[(\d+)\]/.exec(fd)?.[1];
      const lines = tables.flatMap((t) =>
        t.split("\n").filter((l) => inode !== undefined && l.split(/\s+/).includes(inode)),
      );
      return `${fd}: ${lines.join(" | ") || "not in /proc/net"}`;
    })
    .join("; ");
}

// The programs the server runs write to its stderr too, and some write a line in pieces (GNU
// cat's "cat: -: Connection reset by peer" is several writes): a tcpserver line, always one
// write, may then follow a piece on the same line ("cat: -tcpserver: end 4194636 status 0"). Its
// lines are sought anywhere in a line, never only at its start.
const END = /tcpserver: end (\d+) /g;

/** Every connection so far has its `end` line and the server is back to 0 connections. */
async function settled(target: Target): Promise<void> {
  const { server, connections } = target;
  const ends = () => server.log().match(END)?.length ?? 0;
  await waitFor(
    () => (ends() >= connections ? true : undefined),
    20_000,
    () => `${connections - ends()} of ${connections} connections never ended: ${open(target)}`,
  );
  await waitFor(
    () => (/tcpserver: status: 0\/\d+\n$/.test(server.log()) ? true : undefined),
    10_000,
    () => `never back to 0 connections:\n${server.log().slice(-2000)}`,
  );
}

/** The connections with an `ok` line and no `end` line, each with what its client did, the
 * log's lines from its `ok` line on (the stages' lines name no connection: the ones after it may
 * be its own), the kernel's lines of its TCP connection and what the server runs. */
function open({ server, said }: Target): string {
  const log = server.log();
  const ok = new Map<string, number>();
  for (const [, id = "", port = ""] of log.matchAll(/tcpserver: ok (\d+) .*:(\d+)$/gm))
    ok.set(id, Number(port));
  for (const [, id = ""] of log.matchAll(END)) ok.delete(id);
  const pid = server.child.pid as number;
  const programs = programsOf(pid).map((c) => `${c.pid} ${c.comm} ${c.state}`);
  const fds = ownFds(pid).filter((fd) => fd.includes("socket:"));
  return [...ok]
    .map(([id, port]) => {
      const what = said?.get(port)?.map((s) => `${s.what}: ${s.steps.join(", ")}`);
      return [
        `${id} from port ${port}: ${what?.join(" or ") ?? "?"}`,
        `  its TCP connection: ${tcpLines(port).join(" | ") || "none"}`,
        `  log from its ok line on:\n${linesAfter(log, `tcpserver: ok ${id} `)}`,
      ].join("\n");
    })
    .concat(`the server's programs: ${programs.join(", ") || "none"}`)
    .concat(`the server's sockets: ${sockets(fds)}`)
    .join("\n");
}

/** Up to 60 lines of `log` from the one that holds `start` on, but the status lines and the
 * other connections' first lines (their `ok` lines say as much). */
function linesAfter(log: string, start: string): string {
  const lines = log.split("\n");
  return lines
    .slice(lines.findIndex((l) => l.includes(start)))
    .filter((l) => l && !/^tcpserver: (status:|pid \d+ from) /.test(l))
    .slice(0, 60)
    .map((l) => `    ${l}`)
    .join("\n");
}

/** The kernel's TCP table lines with `port` at either end (state, queues, timers, inode). */
function tcpLines(port: number): string[] {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  return ["tcp", "tcp6"].flatMap((t) =>
    readFileSync(`/proc/net/${t}`, "latin1")
      .split("\n")
      .filter((l) => l.includes(hex))
      .map((l) => l.trim().replace(/\s+/g, " ")),
  );
}

/** An fd's open flags, from /proc/PID/fdinfo (-1 when it is gone). */
function flagsOf(pid: number, fd: string): number {
  try {
    const flags = /flags:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "latin1"));
    return flags ? parseInt(flags[1] ?? "", 8) : -1;
  } catch {
    return -1;
  }
}

/** The flags of each of `fds` ("N target"), for a message. */
function fdInfo(pid: number, fds: string[]): string {
  return fds
    .map((fd) => fd.split(" ")[0] ?? "")
    .map((fd) => `fd ${fd} flags 0${flagsOf(pid, fd).toString(8)}`)
    .join(", ");
}

/** `bytes` cut at `cuts` (any numbers, taken modulo its length): the writes a random client
 * or server makes of them, none empty. */
export function cutInto(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((n) => (bytes.length ? n % bytes.length : 0)))].sort(
    (a, b) => a - b,
  );
  return [0, ...at]
    .map((from, i) => bytes.subarray(from, at[i] ?? bytes.length))
    .filter((b) => b.length > 0);
}

/** What a random peer writes, as fields for fc.record beside a test's own: `pieces` (of
 * `known`, or random bytes), the `cuts` made in them (see cutInto), the `pause` after each
 * write (ms). */
export function talkOf(known: readonly Buffer[], maxPieces: number) {
  return {
    pieces: fc.array(fc.oneof(fc.constantFrom(...known), fc.uint8Array({ maxLength: 24 })), {
      maxLength: maxPieces,
    }),
    cuts: fc.array(fc.nat(), { maxLength: 3 }),
    pause: fc.integer({ min: 0, max: 20 }),
  };
}

/** How a random client goes: a FIN, a reset, or its socket closed as it is. */
export const HOW = ["end", "reset", "drop"] as const;
export type How = (typeof HOW)[number];

export interface RandomTalk {
  chunks: Buffer[];
  /** ms after each write */
  pause: number;
  how: How;
  /** What the client did, for the message when its session does not end. */
  said: string;
  /** Its own steps first (a protocol's upgrade), given its socket and what it has read so far
   * (`seen.text`, which they may reset): the stream to write its chunks on. */
  prelude?: (tcp: Socket, seen: { text: string }) => Promise<Duplex>;
}

/** One random client against `target`: its prelude, its chunks with their pauses, then it goes
 * as `how` says. Resolves with what it read (since the last reset of `seen`) once its socket is
 * closed; fails after 15 s, a session that outlives its client. */
export async function talkRandomly(target: Target, t: RandomTalk): Promise<Outcome> {
  target.connections++;
  const tcp = connect(target.server.port, "127.0.0.1");
  tcp.on("error", () => {});
  const seen = { text: "" };
  tcp.on("data", (d: Buffer) => (seen.text += d.toString("latin1")));
  const closed = new Promise<void>((resolve) => tcp.once("close", () => resolve()));
  const dialogue = async () => {
    await new Promise<void>((resolve) => tcp.once("connect", () => resolve()));
    fileSaid(target, tcp.localPort ?? 0, { what: t.said, steps: [] });
    const out = t.prelude ? await t.prelude(tcp, seen) : tcp;
    for (const chunk of t.chunks) {
      if (out.destroyed) break;
      out.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, t.pause));
    }
    if (t.how === "end") out.end();
    else if (t.how === "reset" && !tcp.destroyed) tcp.resetAndDestroy();
    else tcp.destroy();
    await closed;
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      dialogue(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          tcp.destroy();
          reject(new Error(`a session not over 15 s after its client's ${t.said}`));
        }, 15_000);
      }),
    ]);
    return { got: seen.text };
  } finally {
    clearTimeout(timer);
  }
}
