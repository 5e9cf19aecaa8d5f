// peekBytes on a connection that is a stream already (src/stream/peek.ts's stream path: a pipe,
// or a stream an earlier stage made, as tlsd's look makes one before its on-demand peek), over
// real sockets: what was read goes back in front, and a client that ends inside what is looked
// for ends the look without an error on the stream. And its two limits (in-memory streams and
// node:test's mocked clock: what is checked is which limit ends a look, not how long it takes).
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer } from "node:net";
import type { Socket } from "node:net";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { peekBytes, peekStream } from "../../src/stream/peek.ts";
import { Stopper } from "../../src/ucspi/stop-signal.ts";

/** The server's end of a fresh loopback connection, and the client's. */
async function socketPair(): Promise<{ server: Socket; client: Socket; close: () => void }> {
  const listener = createServer({ allowHalfOpen: true });
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const port = (listener.address() as { port: number }).port;
  const accepted = once(listener, "connection");
  const client = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  const [server] = (await accepted) as [Socket];
  await once(client, "connect");
  return {
    server,
    client,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

/** What the stream has left to read, to its end. */
async function readToEnd(stream: Socket): Promise<string> {
  let read = "";
  stream.on("data", (chunk: Buffer) => (read += chunk.toString("latin1")));
  await once(stream, "end");
  return read;
}

const LIMITS = { silenceMs: 5000, helloMs: 5000, maxBytes: 64 };
/** Wants 10 bytes. */
const TEN = (bytes: Buffer) => (bytes.length >= 10 ? true : 10);

test("a stream: bytes come in two writes, all of them are looked at and stay to be read", async () => {
  const { server, client, close } = await socketPair();
  try {
    client.write("12345");
    setTimeout(() => client.write("67890abc"), 20);
    const { look, connection } = await peekBytes({ stream: server }, LIMITS, TEN);
    assert.equal(look.kind, "done");
    assert.equal(connection.stream, server);
    client.end();
    assert.equal(await readToEnd(server), "1234567890abc");
  } finally {
    close();
  }
});

test("a stream whose client ends inside what is looked for: unfinished, and no error on the stream", async () => {
  const { server, client, close } = await socketPair();
  try {
    client.end("12345");
    const { look } = await peekBytes({ stream: server }, LIMITS, TEN);
    assert.deepEqual(look, { kind: "unfinished", reason: "closed", bytes: Buffer.from("12345") });
    // An error would come on a later tick, to no listener (in tcpserver: every connection's end).
    const errors: Error[] = [];
    server.on("error", (error) => errors.push(error));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(errors, []);
    assert.equal(server.errored, null);
  } finally {
    close();
  }
});

test("stop: a look stopped before it has what it needs ends as silent, and what came stays to be read", async () => {
  const { server, client, close } = await socketPair();
  try {
    const stop = new Stopper();
    client.write("12345");
    const looking = peekBytes({ stream: server }, { ...LIMITS, stop }, TEN);
    await new Promise((resolve) => setTimeout(resolve, 20));
    stop.stop();
    assert.deepEqual((await looking).look, { kind: "silent" });
    client.end("67890");
    assert.equal(await readToEnd(server), "1234567890");
  } finally {
    close();
  }
});

/** Lets a stream's queued events run (setImmediate: the mocked clock is setTimeout's only). */
const turn = () => new Promise((resolve) => setImmediate(resolve));

test("two limits: silence until a first byte, then the rest has helloMs of its own", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const stream = new PassThrough();
  let settled = false;
  const looking = peekStream(stream, { silenceMs: 1000, helloMs: 1000, maxBytes: 64 }, TEN);
  void looking.then(() => (settled = true));
  t.mock.timers.tick(800);
  stream.write("12345");
  await turn();
  t.mock.timers.tick(900);
  await turn();
  assert.equal(settled, false, "1700 ms in all, 900 since the first byte: still waiting");
  t.mock.timers.tick(100);
  assert.deepEqual(await looking, {
    kind: "unfinished",
    reason: "timed out",
    bytes: Buffer.from("12345"),
  });
});

test("one limit (no helloMs, as tlsd's -K): silenceMs bounds the whole look", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const stream = new PassThrough();
  const looking = peekStream(stream, { silenceMs: 1000, maxBytes: 64 }, TEN);
  t.mock.timers.tick(800);
  stream.write("12345");
  await turn();
  t.mock.timers.tick(200);
  assert.deepEqual(await looking, {
    kind: "unfinished",
    reason: "timed out",
    bytes: Buffer.from("12345"),
  });
  // What was read is back in front.
  assert.equal(String(stream.read()), "12345");
});

test("silence: nothing within silenceMs, nothing read", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const stream = new PassThrough();
  const looking = peekStream(stream, { silenceMs: 1000, maxBytes: 64 }, TEN);
  t.mock.timers.tick(1000);
  assert.deepEqual(await looking, { kind: "silent" });
  stream.end("later");
  assert.equal(String(stream.read()), "later");
});
