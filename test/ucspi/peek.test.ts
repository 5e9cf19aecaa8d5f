// peekBytes on a connection that is a stream already (src/ucspi/peek.ts's stream path: a pipe,
// or a stream an earlier stage made, as tlsd's look makes one before its on-demand peek), over
// real sockets: what was read goes back in front, and a client that ends inside what is looked
// for ends the look without an error on the stream.
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer } from "node:net";
import type { Socket } from "node:net";
import { test } from "node:test";
import { peekBytes } from "../../src/ucspi/peek.ts";

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
    server.resume();
    let read = "";
    server.on("data", (chunk: Buffer) => (read += chunk.toString("latin1")));
    await once(server, "end");
    assert.equal(read, "1234567890abc");
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
