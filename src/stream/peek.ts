// Looking at a connection's first bytes without taking them: on a socket they are peeked
// (MSG_PEEK), so they stay in the kernel and whatever runs next (one of our stages in this
// process, or a spawned program on the socket itself) reads them as if nobody had looked; on any
// other stream (a pipe) they are read and put back in front of the stream (unshift). So are the
// bytes of a socket whose receive buffer fills before the look has what it needs (a ClientHello
// of tens of kilobytes in small segments): the peer cannot send more until some are taken.
// tls-sniff looks for a ClientHello this way, acme-challenge for an HTTP request line, tlsd
// for a PROXY header where its ClientHello should be (peekStream alone, on the stream it makes).
import type { Duplex } from "node:stream";
import { connectionStream } from "../ucspi/chain.ts";
import { causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import type { Connection } from "../ucspi/stage.ts";
import type { StopSignal } from "../ucspi/stop-signal.ts";

/** What the caller makes of the bytes so far: enough (true), or how many it needs in all. */
export type Examine = (bytes: Buffer) => true | number;

export interface Limits {
  /** How long a client that sends nothing is waited for (ms). */
  silenceMs: number;
  /** How long a client that started has to send what `examine` needs (ms); without it,
   * silenceMs bounds the whole look (tlsd's -K, which the handshake shares). */
  helloMs?: number;
  /** The most bytes ever looked at. */
  maxBytes: number;
  /** Ends the look early, as silent (whatever came stays where it was). */
  stop?: StopSignal;
}

export type Look =
  /** `examine` had enough. */
  | { kind: "done"; bytes: Buffer }
  /** Nothing came within silenceMs. */
  | { kind: "silent" }
  /** The client left before sending a byte (reason: "closed", or how its connection failed). */
  | { kind: "closed"; reason: string }
  /** It started and did not finish: in time, or before it closed (bytes: what came). */
  | { kind: "unfinished"; reason: string; bytes: Buffer };

export interface Peeked {
  look: Look;
  /** The connection to pass on, every byte still in it. */
  connection: Connection;
}

/** Looks at the connection's first bytes until `examine` has enough; none is consumed. */
export async function peekBytes(
  connection: Connection,
  limits: Limits,
  examine: Examine,
): Promise<Peeked> {
  let readOn: ReadOn = {};
  if (connection.fd !== undefined && !connection.stream) {
    const look = await peekSocket(connection.fd, limits, examine);
    if ("kind" in look) return { look, connection };
    readOn = look;
  }
  // A pipe (the fd is not a socket), a socket whose buffer is full, or a stream already made by
  // an earlier stage: a spawned program now gets the stream through a relay, so the fd is not
  // passed on.
  const stream = connectionStream(connection);
  const look = await peekStream(stream, limits, examine, readOn.startedLeftMs);
  return { look, connection: { stream, proxy: connection.proxy } };
}

/** Takes the bytes peeked so far off a socket, so that closing it sends a FIN, not a reset. */
export function drain(connection: Connection, maxBytes: number): void {
  if (connection.fd === undefined || connection.stream) return;
  try {
    native().recv(connection.fd, maxBytes, true);
  } catch {
    // reset meanwhile: nothing to drain
  }
}

/** The timers of one look: silence until a first byte, then the limit for the rest (helloMs
 * from that byte; without it, what is left of silenceMs). With startedLeftMs, a look that
 * started already goes on, with that many milliseconds left. */
function timers(
  limits: Limits,
  settle: (look: Look) => void,
  seen: () => Buffer,
  startedLeftMs?: number,
) {
  let started = startedLeftMs !== undefined;
  const expired = () =>
    settle(
      started ? { kind: "unfinished", reason: "timed out", bytes: seen() } : { kind: "silent" },
    );
  let timer = setTimeout(expired, startedLeftMs ?? limits.silenceMs);
  let deadline = performance.now() + (startedLeftMs ?? limits.silenceMs);
  const stopped = () => settle({ kind: "silent" });
  if (limits.stop?.stopped) queueMicrotask(stopped);
  const unhear = limits.stop?.onStop(stopped);
  return {
    /** Some bytes came, not enough: helloMs runs from here, if there is one. */
    started() {
      if (started) return;
      started = true;
      if (limits.helloMs === undefined) return;
      clearTimeout(timer);
      timer = setTimeout(expired, limits.helloMs);
      deadline = performance.now() + limits.helloMs;
    },
    /** Milliseconds until the running limit expires. */
    left() {
      return Math.max(0, deadline - performance.now());
    },
    stop() {
      clearTimeout(timer);
      unhear?.();
    },
    get isStarted() {
      return started;
    },
  };
}

const EMPTY = Buffer.alloc(0);

/** The look goes on by reading (peekStream): fd is not a socket, or (startedLeftMs: what is
 * left of its time) its receive buffer is full with fewer bytes than the look needs. */
interface ReadOn {
  startedLeftMs?: number;
}

function peekSocket(fd: number, limits: Limits, examine: Examine): Promise<Look | ReadOn> {
  const n = native();
  return new Promise((resolve) => {
    let waiting: number | undefined;
    let lowat = 1;
    let last: Buffer = EMPTY;
    let done = false;
    const settle = (look: Look | ReadOn) => {
      if (done) return;
      done = true;
      clock.stop();
      if (waiting !== undefined) n.cancelWait(fd, waiting);
      if (lowat > 1) n.rcvLowat(fd, 1);
      resolve(look);
    };
    const clock = timers(limits, settle, () => last);
    const ended = (reason: string): Look =>
      clock.isStarted ? { kind: "unfinished", reason, bytes: last } : { kind: "closed", reason };
    /** status 1: the peer has shut its writing side (EPOLLRDHUP), as whenReadable tells. */
    const attempt = (status?: number) => {
      waiting = undefined;
      let bytes: Buffer | undefined | null;
      try {
        bytes = n.recv(fd, limits.maxBytes, false);
      } catch (error) {
        if ((error as { code?: string }).code === "ENOTSOCK") return settle({});
        return settle(ended(causeText(error)));
      }
      if (bytes === null) return settle(ended("closed"));
      if (bytes === undefined) {
        waiting = n.whenReadable(fd, attempt);
        return;
      }
      // Woken with no more bytes than before, though it waits for more: the peer's FIN (the
      // bytes stay in the socket for whatever runs next), or a receive buffer too full to take
      // more (Linux wakes a reader under memory pressure or a closed window whatever
      // SO_RCVLOWAT says, and small segments fill the buffer long before the window is used
      // up): nothing more comes until bytes are taken, so the look reads on, and what it read
      // goes back in front of the stream.
      if (lowat > 1 && bytes.length === last.length) {
        if (status === 1) return settle(ended("closed"));
        return settle({ startedLeftMs: clock.left() });
      }
      last = bytes;
      const verdict = examine(bytes);
      if (verdict === true || bytes.length >= limits.maxBytes)
        return settle({ kind: "done", bytes });
      clock.started();
      // Wake up only once the bytes it needs are all there (they all stay in the socket).
      lowat = Math.min(verdict, limits.maxBytes);
      n.rcvLowat(fd, lowat);
      waiting = n.whenReadable(fd, attempt);
    };
    attempt();
  });
}

/** Reads the stream's first bytes until `examine` has enough, and puts them back in front.
 * Read in paused mode ('readable'): a stream that nobody reads afterwards is left as it was.
 * startedLeftMs: the look began on the socket under the stream, with this much time left. */
export function peekStream(
  stream: Duplex,
  limits: Limits,
  examine: Examine,
  startedLeftMs?: number,
): Promise<Look> {
  return new Promise((resolve) => {
    let seen: Buffer = EMPTY;
    let done = false;
    const settle = (look: Look) => {
      if (done) return;
      done = true;
      clock.stop();
      stream.off("readable", onReadable);
      stream.off("end", onEnd);
      stream.off("error", onError);
      // Every byte read goes back in front, for whatever reads the stream next; an ended
      // stream has no front (Node would emit an error that nobody listens to any more), and
      // nothing reads it next.
      if (seen.length > 0 && !stream.readableEnded) stream.unshift(seen);
      resolve(look);
    };
    const clock = timers(limits, settle, () => seen, startedLeftMs);
    const ended = (reason: string): Look =>
      seen.length > 0 ? { kind: "unfinished", reason, bytes: seen } : { kind: "closed", reason };
    const onReadable = () => {
      for (
        let chunk = stream.read() as Buffer | null;
        chunk;
        chunk = stream.read() as Buffer | null
      )
        seen = seen.length > 0 ? Buffer.concat([seen, chunk]) : chunk;
      if (seen.length === 0) return;
      if (examine(seen) === true || seen.length >= limits.maxBytes)
        settle({ kind: "done", bytes: seen });
      else clock.started();
    };
    const onEnd = () => settle(ended("closed"));
    const onError = (error: Error) => settle(ended(causeText(error)));
    stream.on("readable", onReadable);
    stream.once("end", onEnd);
    stream.once("error", onError);
  });
}
