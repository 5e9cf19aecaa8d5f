// The MySQL / MariaDB connection-phase reader (src/dialogue/mysql.ts): packet framing over any
// bytes, the greeting's capability flags, and what the server's auth rounds mean.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  CLIENT_SSL,
  MAX_PACKET,
  advertiseTls,
  clientAsksTls,
  loginStep,
  readPacket,
  responsePlugin,
  serverStep,
  tlsOffered,
  withoutTlsFlag,
  writePacket,
} from "../../src/dialogue/mysql.ts";
import { greetingPayload } from "../helpers/mysql-packets.ts";

test("framing: any bytes give a packet, a need beyond them, or a refusal, never a throw; packets round-trip", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const r = readPacket(bytes);
      if ("need" in r) assert.ok(r.need > bytes.length && r.need <= MAX_PACKET + 4);
      if ("packet" in r) assert.equal(r.size, 4 + r.packet.payload.length);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 600 }),
      fc.uint8Array({ maxLength: 10 }),
      (seq, payload, after) => {
        const r = readPacket(Buffer.concat([writePacket(seq, payload), after]));
        assert.ok("packet" in r);
        assert.equal(r.packet.seq, seq);
        assert.deepEqual(new Uint8Array(r.packet.payload), payload);
      },
    ),
  );
});

/** A HandshakeV10 as MariaDB 10.11 sends it, with `lower` as its lower flags. */
const greeting = (lower: number) => greetingPayload(0x81ff0000 | lower, "5.5.5-10.11.19-MariaDB");

test("the greeting gets CLIENT_SSL, nothing else changes; what is no greeting is left alone", () => {
  const g = greeting(0xf7fe & ~CLIENT_SSL);
  const r = advertiseTls(g);
  assert.ok(r);
  assert.equal(r.hadTls, false);
  const diff = [...r.payload].map((b, i) => (b !== g[i] ? i : -1)).filter((i) => i >= 0);
  assert.equal(diff.length, 1);
  assert.equal(r.payload.readUInt16LE(diff[0] ?? 0) & CLIENT_SSL, CLIENT_SSL);
  assert.equal(
    advertiseTls(Buffer.from([0xff, 0x10, 0x04, ...Buffer.from("Too many connections")])),
    undefined,
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => void advertiseTls(Buffer.from(bytes))),
  );
});

test("the client's answer: an SSLRequest is 32 bytes with CLIENT_SSL; the flag comes out of the response", () => {
  const ssl = Buffer.alloc(32);
  ssl.writeUInt32LE(0x000aa285 | CLIENT_SSL, 0);
  assert.equal(clientAsksTls(ssl), true);
  const response = Buffer.concat([ssl, Buffer.from("app\0", "latin1")]);
  assert.equal(clientAsksTls(response), false);
  assert.equal(withoutTlsFlag(response).readUInt32LE(0) & CLIENT_SSL, 0);
  assert.deepEqual(withoutTlsFlag(response).subarray(4), response.subarray(4));
});

test("the server's auth rounds: OK and ERR end them; plugins that want the password in clear are named", () => {
  assert.deepEqual(serverStep(Buffer.from([0x00, 0, 0, 2, 0])), { kind: "done" });
  assert.deepEqual(serverStep(Buffer.from([0xff, 0x15, 0x04])), { kind: "done" });
  assert.deepEqual(serverStep(Buffer.from("\xfeclient_ed25519\0seed", "latin1")), { kind: "more" });
  assert.equal(serverStep(Buffer.from("\xfemysql_clear_password\0", "latin1")).kind, "cleartext");
  assert.equal(serverStep(Buffer.from("\xfedialog\0", "latin1")).kind, "cleartext");
  assert.equal(serverStep(Buffer.from([0x01, 0x04])).kind, "cleartext");
  assert.deepEqual(serverStep(Buffer.from([0x01, 0x03])), { kind: "more" });
});

test("a client's view of the greeting: TLS offered or not, both flag halves, and for the program only the allowed flags, no CLIENT_SSL, no MariaDB extended capabilities", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      (lower, only, extended) => {
        const g = greeting(lower | 0x0200);
        g.set(extended, g.indexOf(0, 1) + 1 + 4 + 8 + 1 + 14);
        const r = tlsOffered(g, only);
        assert.ok(r);
        const at = g.indexOf(0, 1) + 1 + 4 + 8 + 1;
        assert.equal(r.tls, ((lower | 0x0200) & CLIENT_SSL) !== 0);
        assert.equal(r.flags, (lower | 0x0200 | (g.readUInt16LE(at + 5) << 16)) >>> 0);
        const offered =
          (r.forProgram.readUInt16LE(at) | (r.forProgram.readUInt16LE(at + 5) << 16)) >>> 0;
        assert.equal(offered, (r.flags & only & ~CLIENT_SSL) >>> 0);
        assert.deepEqual([...r.forProgram.subarray(at + 14, at + 18)], [0, 0, 0, 0]);
        // Nothing else changes.
        const changed = [...r.forProgram]
          .map((b, i) => (b !== g[i] ? i : -1))
          .filter((i) => i >= 0);
        for (const i of changed)
          assert.ok(
            [at, at + 1, at + 5, at + 6].includes(i) || (i >= at + 14 && i < at + 18),
            String(i),
          );
      },
    ),
  );
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 80 }),
      (bytes) => void tlsOffered(Buffer.from(bytes), 0xffffffff),
    ),
  );
});

test("the client's login names its plugin and its auth data whatever the encoding of its auth data (length-encoded, one length byte, NUL-terminated) and with a database; a cleartext one is refused; any bytes never throw", () => {
  const login = (flags: number, auth: Buffer, db?: string, plugin = "mysql_clear_password") => {
    const head = Buffer.alloc(32);
    head.writeUInt32LE(flags >>> 0, 0);
    return Buffer.concat([
      head,
      Buffer.from("bob\0", "latin1"),
      auth,
      Buffer.from(db === undefined ? "" : `${db}\0`, "latin1"),
      Buffer.from(`${plugin}\0`, "latin1"),
    ]);
  };
  const PLUGIN = 0x80000;
  const secret = Buffer.from("s3cret\0", "latin1");
  const lenenc = Buffer.concat([Buffer.from([secret.length]), secret]);
  assert.deepEqual(responsePlugin(login(PLUGIN | 0x200000, lenenc)), {
    plugin: "mysql_clear_password",
    auth: secret,
  });
  assert.equal(responsePlugin(login(PLUGIN | 0x8000, lenenc))?.plugin, "mysql_clear_password");
  assert.deepEqual(responsePlugin(login(PLUGIN, secret)), {
    plugin: "mysql_clear_password",
    auth: secret.subarray(0, -1),
  });
  assert.equal(
    responsePlugin(login(PLUGIN | 0x8000 | 0x8, lenenc, "db"))?.plugin,
    "mysql_clear_password",
  );
  assert.equal(responsePlugin(login(0x8000, lenenc)), undefined);
  assert.deepEqual(loginStep(login(PLUGIN | 0x200000, lenenc, undefined, "dialog")), {
    kind: "cleartext",
    why: "the login uses dialog",
  });
  assert.equal(
    loginStep(login(PLUGIN | 0x200000, lenenc, undefined, "mysql_native_password")),
    undefined,
  );
  // sha256_password: the password itself is refused; asking for the RSA key (1) is not.
  assert.equal(
    loginStep(login(PLUGIN | 0x200000, lenenc, undefined, "sha256_password"))?.why,
    "the login uses sha256_password",
  );
  assert.equal(
    loginStep(login(PLUGIN | 0x200000, Buffer.from([1, 1]), undefined, "sha256_password")),
    undefined,
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      responsePlugin(Buffer.from(bytes));
    }),
    { numRuns: 2000 },
  ); // Any login a client makes: its plugin and its auth data come back as they were written.
  const noNul = fc.string({ maxLength: 20 }).map((t) => t.replace(/\0/g, ""));
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 250 }),
      fc.option(noNul, { nil: undefined }),
      fc.constantFrom("mysql_native_password", "caching_sha2_password", "dialog", "client_ed25519"),
      fc.boolean(),
      (auth, db, plugin, lenencFlag) => {
        const data = Buffer.concat([Buffer.from([auth.length]), auth]);
        const flags = PLUGIN | (lenencFlag ? 0x200000 : 0x8000) | (db === undefined ? 0 : 0x8);
        assert.deepEqual(responsePlugin(login(flags, data, db, plugin)), {
          plugin,
          auth: Buffer.from(auth),
        });
      },
    ),
  );
});
