// reverseName / forwardConfirms against a tiny DNS server on 127.0.0.1 (UDP, answers from a
// table, or never answers), and resolveHostAddresses with getaddrinfo and djb's numeric rule.
import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { test } from "node:test";
import {
  djbNumericAddresses,
  forwardConfirms,
  resolveHostAddresses,
  reverseName,
} from "../../src/net/dns.ts";

const PTR: Record<string, string> = {
  "1.2.0.192.in-addr.arpa": "Loop.Test",
  "2.2.0.192.in-addr.arpa": "liar.test",
  ["1" + ".0".repeat(23) + ".8.b.d.0.1.0.0.2.ip6.arpa"]: "Six.Test",
};
const A: Record<string, string[]> = { "loop.test": ["192.0.2.1"], "liar.test": ["192.0.2.9"] };
const AAAA: Record<string, string[]> = { "six.test": ["2001:db8::1"] };

interface FakeDns {
  server: string;
  questions: string[];
  close(): Promise<void>;
}

function encodeName(name: string): Buffer {
  const labels = name.split(".").filter((label) => label !== "");
  return Buffer.concat([
    ...labels.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])),
    Buffer.from([0]),
  ]);
}

function ipBytes(ip: string): Buffer {
  if (!ip.includes(":")) return Buffer.from(ip.split(".").map(Number));
  const [head = "", tail = ""] = ip.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === "" ? [] : tail.split(":");
  const groups = [...h, ...new Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  return out;
}

function answer(query: Buffer, questions: string[]): Buffer {
  const labels: string[] = [];
  let offset = 12;
  for (let length = query[offset] ?? 0; length !== 0; length = query[offset] ?? 0) {
    labels.push(query.subarray(offset + 1, offset + 1 + length).toString("latin1"));
    offset += 1 + length;
  }
  offset += 1;
  const type = query.readUInt16BE(offset);
  const question = query.subarray(12, offset + 4);
  const name = labels.join(".").toLowerCase();
  questions.push(`${type} ${name}`);
  const records: Buffer[] = [];
  const record = (rtype: number, data: Buffer): Buffer => {
    const fixed = Buffer.alloc(12);
    fixed.writeUInt16BE(0xc00c, 0); // pointer to the question name
    fixed.writeUInt16BE(rtype, 2);
    fixed.writeUInt16BE(1, 4);
    fixed.writeUInt32BE(60, 6);
    fixed.writeUInt16BE(data.length, 10);
    return Buffer.concat([fixed, data]);
  };
  const ptr = PTR[name];
  if (type === 12 && ptr !== undefined) records.push(record(12, encodeName(ptr)));
  if (type === 1) for (const ip of A[name] ?? []) records.push(record(1, ipBytes(ip)));
  if (type === 28) for (const ip of AAAA[name] ?? []) records.push(record(28, ipBytes(ip)));
  const known = ptr !== undefined || A[name] !== undefined || AAAA[name] !== undefined;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8180 | (known ? 0 : 3), 2); // response, RD, RA; NXDOMAIN if unknown
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  return Buffer.concat([header, question, ...records]);
}

async function fakeDns(silent = false): Promise<FakeDns> {
  const questions: string[] = [];
  const socket: Socket = createSocket("udp4");
  socket.on("message", (query, peer) => {
    if (silent) return;
    socket.send(answer(query, questions), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    questions,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

test("reverseName: first PTR name, lowercased; mapped IPv4 asked as IPv4; IPv6 via ip6.arpa", async () => {
  const dns = await fakeDns();
  try {
    const servers = [dns.server];
    assert.equal(await reverseName("192.0.2.1", 2000, { servers }), "loop.test");
    assert.equal(await reverseName("::ffff:192.0.2.1", 2000, { servers }), "loop.test");
    assert.equal(await reverseName("2001:db8::1", 2000, { servers }), "six.test");
    assert.equal(await reverseName("192.0.2.77", 2000, { servers }), undefined); // NXDOMAIN
    assert.equal(await reverseName("not an ip", 2000, { servers }), undefined);
    assert.ok(dns.questions.includes("12 1.2.0.192.in-addr.arpa"));
  } finally {
    await dns.close();
  }
});

test("reverseName: no answer at all gives undefined once the timeout has passed", async () => {
  const dns = await fakeDns(true);
  try {
    const started = performance.now();
    assert.equal(await reverseName("192.0.2.1", 300, { servers: [dns.server] }), undefined);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 1000, `took ${elapsed} ms`);
  } finally {
    await dns.close();
  }
});

test("reverseName with the system resolver: an unanswerable address is undefined in time", async () => {
  const started = performance.now();
  assert.equal(await reverseName("192.0.2.123", 500), undefined); // TEST-NET-1: no PTR anywhere
  assert.ok(performance.now() - started < 1500);
});

test("forwardConfirms: A or AAAA must equal the address", async () => {
  const dns = await fakeDns();
  try {
    const servers = [dns.server];
    assert.equal(await forwardConfirms("loop.test", "192.0.2.1", 2000, { servers }), true);
    assert.equal(await forwardConfirms("loop.test", "::ffff:192.0.2.1", 2000, { servers }), true);
    assert.equal(await forwardConfirms("liar.test", "192.0.2.2", 2000, { servers }), false);
    assert.equal(await forwardConfirms("six.test", "2001:db8:0:0::1", 2000, { servers }), true);
    assert.equal(await forwardConfirms("six.test", "2001:db8::2", 2000, { servers }), false);
    assert.equal(await forwardConfirms("nowhere.test", "192.0.2.1", 2000, { servers }), false);
  } finally {
    await dns.close();
  }
  const silent = await fakeDns(true);
  try {
    const started = performance.now();
    assert.equal(
      await forwardConfirms("loop.test", "192.0.2.1", 300, { servers: [silent.server] }),
      false,
    );
    assert.ok(performance.now() - started < 1000);
  } finally {
    await silent.close();
  }
});

test("resolveHostAddresses: /etc/hosts counts; literals; djb's numeric rule", async () => {
  assert.ok((await resolveHostAddresses("localhost")).includes("127.0.0.1"));
  assert.deepEqual(await resolveHostAddresses("::1"), ["::1"]);
  assert.deepEqual(await resolveHostAddresses("[::1]"), ["::1"]);
  // djb: 127.1 is no IP address (tcpserver: fatal: no IP address for 127.1), though
  // getaddrinfo() would read it as 127.0.0.1.
  assert.deepEqual(await resolveHostAddresses("127.1"), []);
  assert.deepEqual(await resolveHostAddresses("[127.0.0.1]"), ["127.0.0.1"]);
  assert.deepEqual(await resolveHostAddresses("0127.0.0.01"), ["127.0.0.1"]);
  assert.deepEqual(await resolveHostAddresses("383.0.0.1"), ["127.0.0.1"]);
  // getaddrinfo() reads inet_aton's hex forms as 127.0.0.1; djb asks DNS, which has no such name.
  for (const hex of ["0x7f.1", "0x7f000001", "0x7f.0.0.1", "0X7F.0x0.0.1."])
    assert.deepEqual(await resolveHostAddresses(hex), [], hex);
  assert.deepEqual(djbNumericAddresses("1.2.3.4.5.6.7.8"), ["1.2.3.4", "5.6.7.8"]);
  assert.deepEqual(djbNumericAddresses("127.0.0.1.5"), ["127.0.0.1"]);
  assert.equal(djbNumericAddresses("loop.test"), undefined);
});
