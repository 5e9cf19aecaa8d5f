// tls-sniff and ALPN names that are not printable: GREASE values (RFC 8701: 0x0A 0x0A holds
// two newlines), a NUL, a comma, a newline. They are left out of TLS_SNIFF_ALPN and of the -v2
// log line: a NUL cut the variable short (`h2\0x` read as `h2`), a newline forged a log line, a
// comma made one name two. Real processes: our tcpserver (tls-sniff in-process, the route's
// program spawned) and djb's (tls-sniff a process of its own), a raw ClientHello over a socket.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import fc from "fast-check";
import { PATH_WITH_BIN, djb, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { isShownAlpn, shownAlpn } from "../../src/tls-sniff/route.ts";

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(data.length), data]);
}

/** A TLS 1.3-style ClientHello in one record, with server_name and these ALPN names. */
function clientHello(serverName: string, alpn: readonly Buffer[]): Buffer {
  const name = Buffer.from(serverName, "latin1");
  const sniEntry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
  const list = Buffer.concat(alpn.map((p) => Buffer.concat([Buffer.from([p.length]), p])));
  const extensions = Buffer.concat([
    extension(0, Buffer.concat([u16(sniEntry.length), sniEntry])),
    extension(16, Buffer.concat([u16(list.length), list])),
    extension(43, Buffer.from([2, 3, 4])),
  ]);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    randomBytes(32),
    Buffer.from([0]), // session id
    u16(2),
    u16(0x1301),
    Buffer.from([1, 0]), // compression: null
    u16(extensions.length),
    extensions,
  ]);
  const message = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(message.length), message]);
}

/** Sends `bytes`, half-closes, and collects what the server's program wrote back. */
function exchange(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let got = "";
    socket.on("connect", () => socket.end(bytes));
    socket.on("data", (b: Buffer) => (got += b.toString("latin1")));
    socket.on("error", reject);
    socket.on("end", () => {
      socket.destroy();
      resolve(got);
    });
  });
}

const ODD_NAMES = [
  Buffer.from([0x0a, 0x0a]), // GREASE
  Buffer.from("h2\0x", "latin1"),
  Buffer.from("a,b", "latin1"),
  Buffer.from("x\ntls-sniff: warning: forged", "latin1"),
  Buffer.from("caf\xe9", "latin1"),
  Buffer.from("with space", "latin1"),
];

/** The route's program: reads the hello (unread bytes at the close would reset the
 * connection), then writes the variable, between brackets, on the connection. */
const SHOW = ["sh", "-c", 'cat >/dev/null; printf "alpn=[%s]\\n" "${TLS_SNIFF_ALPN-unset}"'];

for (const [who, server] of [
  ["ours (in-process)", ours("tcpserver")],
  ["djb's (a process of its own)", djb("tcpserver")],
] as const) {
  describe(who, () => {
    test("names that cannot be shown are left out of TLS_SNIFF_ALPN and the log line", async () => {
      const s = await startServer(
        server,
        ["-vRHl0", "127.0.0.1", "0", "tls-sniff", "-v2", ...SHOW],
        { env: { ...process.env, PATH: PATH_WITH_BIN } },
      );
      try {
        const [grease, ...others] = ODD_NAMES;
        const mixed = [...(grease ? [grease] : []), Buffer.from("h2"), ...others];
        const reply = await exchange(
          s.port,
          clientHello("mixed.test", [...mixed, Buffer.from("http/1.1")]),
        );
        assert.equal(reply, "alpn=[h2,http/1.1]\n");
        // Nothing that can be shown: no variable at all, and "-" in the log.
        assert.equal(await exchange(s.port, clientHello("odd.test", ODD_NAMES)), "alpn=[unset]\n");
        await s.waitForLog(/ end \d+ status 0$/, 2);
        const lines = s.log().match(/^tls-sniff: .*$/gm);
        assert.deepEqual(lines, [
          "tls-sniff: info: 127.0.0.1: tls sni=mixed.test alpn=h2,http/1.1",
          "tls-sniff: info: 127.0.0.1: tls sni=odd.test alpn=-",
        ]);
      } finally {
        await s.stop();
      }
    });
  });
}

test("shownAlpn: printable names without comma or space kept in order, others left out", () => {
  const name = fc
    .uint8Array({ minLength: 1, maxLength: 12 })
    .map((bytes) => Buffer.from(bytes).toString("latin1"));
  fc.assert(
    fc.property(
      fc.array(fc.oneof(name, fc.constantFrom("h2", "http/1.1", "acme-tls/1"))),
      (names) => {
        const shown = shownAlpn(names);
        assert.deepEqual(
          shown,
          names.filter((n) => [...n].every((c) => c > " " && c <= "~" && c !== ",")),
        );
        const joined = shown.join(",");
        assert.match(joined, /^[\x21-\x7e]*$/);
        if (shown.length > 0) assert.deepEqual(joined.split(","), shown);
        for (const n of shown) assert.ok(isShownAlpn(n));
      },
    ),
  );
});
