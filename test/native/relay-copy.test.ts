// The splice relay's first bytes go by copy (recv and send: src/native/relay.c), and what the
// writer does not take then waits in the pipe. Here a service writes a few hundred bytes a
// turn of the loop, so that every read is small and copied, to a client whose socket holds
// little (a 4 KiB send buffer) and who reads nothing until the service has to wait: sends come
// up short, their rest goes to the pipe, and the stream must still arrive whole and in order.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Socket } from "node:net";
import { test } from "node:test";
import { native } from "../../src/ucspi/native.ts";

test("small reads copied to a client that is full: the rest of each waits in the pipe, and the stream arrives whole, in order, with both ends passed on", async () => {
  const n = native();
  const [clientOurs, clientTheirs] = n.socketPair(4096);
  const [serviceOurs, serviceTheirs] = n.socketPair();
  const relayed = new Promise<[number, number]>((resolve) =>
    n.relay(clientOurs, serviceOurs, (errno, side) => resolve([errno, side])),
  );
  const service = new Socket({ fd: serviceTheirs, readable: true, writable: true });
  const client = new Socket({
    fd: clientTheirs,
    readable: true,
    writable: true,
    allowHalfOpen: true,
  });
  client.pause();

  const sent = createHash("sha256");
  let total = 0;
  let blocked!: () => void;
  const full = new Promise<void>((resolve) => (blocked = resolve));
  let left = 12_000;
  const more = () => {
    if (left-- === 0) return void service.end();
    const chunk = randomBytes(100 + (left % 400));
    sent.update(chunk);
    total += chunk.length;
    if (service.write(chunk)) return void setImmediate(more);
    blocked();
    service.once("drain", more);
  };
  more();

  // The relay stopped reading (its pipe full behind the client's socket): read it all now.
  await full;
  const got = createHash("sha256");
  let bytes = 0;
  for await (const chunk of client) {
    got.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  assert.equal(bytes, total);
  assert.equal(got.digest("hex"), sent.digest("hex"));
  // The client's own end (it had the service's) reaches the service as its EOF, and the relay
  // ends well.
  client.end();
  service.resume();
  await new Promise((resolve) => service.once("end", resolve));
  assert.deepEqual(await relayed, [0, 0]);
  n.close(clientOurs);
  n.close(serviceOurs);
  client.destroy();
  service.destroy();
});
