// identQuery against a real fake identd on 127.0.0.x with a non-standard port.
import assert from "node:assert/strict";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { test } from "node:test";
import { identQuery, identQueryLine, scanIdentReply } from "../../src/net/ident.ts";

const IDENTD_IP = "127.0.0.7";
const LOCAL_IP = "127.0.0.1";

interface FakeIdentd {
  port: number;
  /** Each query: the exact bytes received (up to the first LF) and the peer address. */
  queries: { bytes: Buffer; from: string | undefined }[];
  close(): Promise<void>;
}

/** `answer` gets the connection once the query line has arrived. */
async function fakeIdentd(answer: (socket: Socket) => void): Promise<FakeIdentd> {
  const queries: FakeIdentd["queries"] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let bytes = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      const had = bytes.includes(0x0a);
      bytes = Buffer.concat([bytes, chunk]);
      if (!had && bytes.includes(0x0a)) {
        queries.push({ bytes, from: socket.remoteAddress });
        answer(socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, IDENTD_IP, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    queries,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function query(
  identPort: number,
  timeoutMs = 2000,
  djbCompat = false,
): Promise<string | undefined> {
  return identQuery({
    localIp: LOCAL_IP,
    localPort: 33151,
    remoteIp: IDENTD_IP,
    remotePort: 57791,
    timeoutMs,
    identPort,
    djbCompat,
  });
}

/** No socket may outlive a query (handles close a few ticks after destroy(), so poll briefly). */
async function assertNoLeftovers(): Promise<void> {
  const sockets = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPSocketWrap");
  for (let i = 0; i < 20 && sockets().length > 0; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.deepEqual(sockets(), []);
}

test("good reply: user id, and the exact query bytes sent from localIp", async () => {
  const identd = await fakeIdentd((socket) =>
    socket.end("57791 , 33151 : USERID : UNIX : joe\r\n"),
  );
  try {
    assert.equal(await query(identd.port), "joe");
    assert.equal(identd.queries.length, 1);
    assert.equal(identd.queries[0]?.bytes.toString("latin1"), "57791 , 33151\r\n");
    assert.equal(identd.queries[0]?.from, LOCAL_IP);
    assert.equal(identQueryLine(57791, 33151), "57791 , 33151\r\n");
  } finally {
    await identd.close();
  }
  await assertNoLeftovers();
});

test("reply in pieces, blanks anywhere, answer without closing the connection", async () => {
  const identd = await fakeIdentd((socket) => {
    socket.write("57791,33151 :US");
    setTimeout(() => socket.write("ERID:\tUNIX , OTHER: al ice\r"), 20);
    setTimeout(() => socket.write("\nignored after LF"), 40);
  });
  try {
    assert.equal(await query(identd.port), "alice");
  } finally {
    await identd.close();
  }
  await assertNoLeftovers();
});

test("ERROR reply: undefined; with djbCompat the empty string djb's tcpserver sets", async () => {
  const identd = await fakeIdentd((socket) => socket.end("57791 , 33151 : ERROR : NO-USER\r\n"));
  try {
    assert.equal(await query(identd.port), undefined);
    assert.equal(await query(identd.port, 2000, true), "");
  } finally {
    await identd.close();
  }
});

test("garbage line and EOF without LF: undefined", async () => {
  const garbage = await fakeIdentd((socket) => socket.end("garbage\r\n"));
  const noLf = await fakeIdentd((socket) => socket.end("57791 , 33151 : USERID : UNIX : joe"));
  try {
    assert.equal(await query(garbage.port), undefined);
    assert.equal(await query(noLf.port), undefined);
    assert.equal(await query(noLf.port, 2000, true), undefined); // djb: remoteinfo fails, unset
  } finally {
    await garbage.close();
    await noLf.close();
  }
  await assertNoLeftovers();
});

test("silence: undefined once timeoutMs has passed, not before, not much later", async () => {
  const identd = await fakeIdentd(() => {});
  try {
    const started = performance.now();
    assert.equal(await query(identd.port, 300), undefined);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 1000, `took ${elapsed} ms`);
  } finally {
    await identd.close();
  }
  await assertNoLeftovers();
});

test("refused: undefined at once", async () => {
  const identd = await fakeIdentd(() => {});
  const port = identd.port;
  await identd.close(); // nothing listens there any more
  const started = performance.now();
  assert.equal(await query(port, 5000), undefined);
  assert.ok(performance.now() - started < 1000);
  await assertNoLeftovers();
});

test("timeoutMs 0 gives undefined without connecting", async () => {
  const identd = await fakeIdentd((socket) => socket.end("1 , 2 : USERID : UNIX : joe\r\n"));
  try {
    assert.equal(await query(identd.port, 0), undefined);
    assert.equal(identd.queries.length, 0);
  } finally {
    await identd.close();
  }
});

test("scanIdentReply follows djb's remoteinfo.c", () => {
  const scan = (text: string, djb = false) => scanIdentReply(Buffer.from(text, "latin1"), djb);
  assert.deepEqual(scan("1 , 2 : USERID : UNIX : joe\r\n"), { complete: true, userId: "joe" });
  assert.deepEqual(scan("1 , 2 : userid : UNIX : joe\n"), { complete: true, userId: "joe" });
  assert.deepEqual(scan("1,2:USERID:UNIX:jo:e\n"), { complete: true, userId: "jo:e" });
  assert.deepEqual(scan("1 , 2 : USERID : UNIX : joe"), { complete: false });
  assert.deepEqual(scan("1 , 2 : USERID : UNIX :\r\n"), { complete: true, userId: undefined });
  assert.deepEqual(scan("1 , 2 : USERID : UNIX :\r\n", true), { complete: true, userId: "" });
  assert.deepEqual(scan("1 , 2 : ERROR : A : b\r\n"), { complete: true, userId: undefined });
  assert.deepEqual(scan("1 , 2 : ERROR : A : b\r\n", true), { complete: true, userId: "b" });
  assert.deepEqual(scan("garbage\n", true), { complete: true, userId: "" });
  // A NUL ends the value, as it would in djb's C string.
  assert.deepEqual(scan("1,2:USERID:UNIX:jo\0e\n"), { complete: true, userId: "jo" });
  // djb stops at a 257-byte user id, LF or not.
  const long = "x".repeat(300);
  assert.deepEqual(scan(`1,2:USERID:UNIX:${long}`), { complete: true, userId: "x".repeat(257) });
  // A reply that never ends is cut off.
  assert.deepEqual(scan("1".repeat(5000)), { complete: true, userId: undefined });
});
