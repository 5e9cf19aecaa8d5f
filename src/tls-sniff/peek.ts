// Looking at a connection's first bytes without taking them: on a socket they are peeked
// (MSG_PEEK), so they stay in the kernel and whatever runs next (our tlsd in this process, or a
// spawned program on the socket itself) reads them as if nobody had looked; on any other
// stream (a pipe) they are read and put back in front of the stream (unshift).
import type { Duplex } from "node:stream";
import { connectionStream } from "../ucspi/chain.ts";
import { native } from "../ucspi/native.ts";
import type { Connection } from "../ucspi/stage.ts";
import { MAX_SNIFF_BYTES, sniff } from "./client-hello.ts";
import type { ClientHelloInfo } from "./client-hello.ts";

export type Verdict =
  | { kind: "tls"; hello: ClientHelloInfo }
  /** silent: the client sent nothing within the silence limit (it waits for the server). */
  | { kind: "plain"; silent: boolean }
  | { kind: "malformed"; reason: string }
  /** The client left before sending a byte. */
  | { kind: "closed" }
  /** It started a ClientHello and did not finish it: in time, or before it closed. */
  | { kind: "unfinished"; reason: string };

export interface Limits {
  silenceMs: number;
  helloMs: number;
}

export interface Peeked {
  verdict: Verdict;
  /** The connection to pass on, every byte still in it. */
  connection: Connection;
}

/** The verdict on the connection's first bytes; none of them is consumed. */
export async function peek(connection: Connection, limits: Limits): Promise<Peeked> {
  if (connection.fd !== undefined && !connection.stream) {
    const verdict = await peekSocket(connection.fd, limits);
    if (verdict) return { verdict, connection };
  }
  // A pipe (the fd is not a socket), or a stream already made by an earlier stage: a spawned
  // program now gets the stream through a relay, so the fd is not passed on.
  const stream = connectionStream(connection);
  const verdict = await peekStream(stream, limits);
  return { verdict, connection: { stream, proxy: connection.proxy } };
}

/** Takes the bytes peeked so far off a socket, so that closing it sends a FIN, not a reset. */
export function drain(connection: Connection): void {
  if (connection.fd === undefined || connection.stream) return;
  try {
    native().recv(connection.fd, MAX_SNIFF_BYTES, true);
  } catch {
    // reset meanwhile: nothing to drain
  }
}

/** The verdict for a connection whose first bytes nobody has decided on yet (timers). */
function decider(limits: Limits, settle: (v: Verdict) => void) {
  let timer = setTimeout(() => settle({ kind: "plain", silent: true }), limits.silenceMs);
  let started = false;
  return {
    /** Some bytes came, not enough to decide: the hello's own limit runs from here. */
    started() {
      if (started) return;
      started = true;
      clearTimeout(timer);
      timer = setTimeout(
        () => settle({ kind: "unfinished", reason: "timed out inside the ClientHello" }),
        limits.helloMs,
      );
    },
    stop() {
      clearTimeout(timer);
    },
    get isStarted() {
      return started;
    },
  };
}

/** undefined when fd is not a socket (the caller reads it as a stream instead). */
function peekSocket(fd: number, limits: Limits): Promise<Verdict | undefined> {
  const n = native();
  return new Promise((resolve) => {
    let waiting: { cancel(): void } | undefined;
    let lowat = 1;
    let seen = 0;
    let done = false;
    const settle = (verdict: Verdict | undefined) => {
      if (done) return;
      done = true;
      state.stop();
      waiting?.cancel();
      if (lowat > 1) n.rcvLowat(fd, 1);
      resolve(verdict);
    };
    const state = decider(limits, settle);
    const attempt = () => {
      waiting = undefined;
      let bytes: Buffer | undefined | null;
      try {
        bytes = n.recv(fd, MAX_SNIFF_BYTES, false);
      } catch (error) {
        if ((error as { code?: string }).code === "ENOTSOCK") return settle(undefined);
        return settle(unfinishedOrClosed(state.isStarted, String(error)));
      }
      if (bytes === null) return settle(unfinishedOrClosed(state.isStarted, "closed"));
      if (bytes === undefined) {
        waiting = n.whenReadable(fd, attempt);
        return;
      }
      // Woken with no more bytes than before, though it waits for more: the peer's FIN.
      if (lowat > 1 && bytes.length === seen)
        return settle(unfinishedOrClosed(true, "closed inside the ClientHello"));
      seen = bytes.length;
      const result = sniff(bytes);
      if (result.kind === "more") {
        state.started();
        // Wake up only once the bytes it needs are all there (they all stay in the socket).
        lowat = result.need;
        n.rcvLowat(fd, lowat);
        waiting = n.whenReadable(fd, attempt);
        return;
      }
      settle(toVerdict(result));
    };
    attempt();
  });
}

function peekStream(stream: Duplex, limits: Limits): Promise<Verdict> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let done = false;
    const settle = (verdict: Verdict) => {
      if (done) return;
      done = true;
      state.stop();
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.pause();
      // Every byte read goes back in front, for whatever reads the stream next.
      if (length > 0) stream.unshift(Buffer.concat(chunks, length));
      resolve(verdict);
    };
    const state = decider(limits, settle);
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      const result = sniff(length === chunk.length ? chunk : Buffer.concat(chunks, length));
      if (result.kind === "more") state.started();
      else settle(toVerdict(result));
    };
    const onEnd = () => settle(unfinishedOrClosed(length > 0, "closed inside the ClientHello"));
    const onError = (error: Error) => settle(unfinishedOrClosed(length > 0, String(error)));
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("error", onError);
  });
}

function toVerdict(result: Exclude<ReturnType<typeof sniff>, { kind: "more" }>): Verdict {
  switch (result.kind) {
    case "tls":
      return { kind: "tls", hello: result.hello };
    case "plain":
      return { kind: "plain", silent: false };
    case "malformed":
      return { kind: "malformed", reason: result.reason };
  }
}

function unfinishedOrClosed(started: boolean, reason: string): Verdict {
  return started ? { kind: "unfinished", reason } : { kind: "closed" };
}
