// The TLS TLVs of tcpforward's PROXY v2 header (src/proxy/tls-tlvs.ts): the first CN read back
// from tlsd's subject form for any value, and for any session facts a header that our decoder
// takes, with the PP2_TYPE_SSL value's sub-TLVs filling it exactly.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { decodeProxyHeader, PP2_TYPE_SSL } from "../../src/proxy/index.ts";
import { envProxyHeader } from "../../src/proxy/from-env.ts";
import {
  firstCommonName,
  PP2_SUBTYPE_SSL_CN,
  readSslTlv,
  tlsTlvs,
} from "../../src/proxy/tls-tlvs.ts";
import { s6Subject } from "../../src/tls/peer-env.ts";
import { toBytes } from "../../src/ucspi/env.ts";

const special = fc.constantFrom(
  ...[",", "=", "+", "<", ">", "#", ";", "\\", '"', " ", "\n", "\0", "\x7f", "\\2c", "CN="],
  ...["\u00eb", "\u2028", "\u{1f600}"],
);
const character = fc.oneof(special, fc.string({ unit: "binary", minLength: 1, maxLength: 1 }));
const value = fc.string({ unit: character, minLength: 1, maxLength: 12 });

test("property: the first CN of tlsd's subject form is the certificate's, whatever its characters", () => {
  fc.assert(
    fc.property(
      fc.record({
        O: fc.option(value, { nil: undefined }),
        OU: fc.array(value, { maxLength: 2 }),
        CN: fc.array(value, { maxLength: 2 }),
      }),
      (subject) => {
        const exported = toBytes(s6Subject(subject as never));
        const cn = firstCommonName(exported);
        const got = cn === undefined ? undefined : Buffer.from(cn, "latin1").toString("utf8");
        assert.equal(got, subject.CN[0]);
      },
    ),
  );
});

/** The sub-TLVs of a PP2_TYPE_SSL value, which must fill it exactly. */
function subTlvs(value: Buffer): Map<number, string> {
  const out = new Map<number, string>();
  let i = 5;
  while (i < value.length) {
    const length = value.readUInt16BE(i + 1);
    assert.ok(i + 3 + length <= value.length, "a sub-TLV past the end of its TLV");
    out.set(value[i] ?? -1, value.subarray(i + 3, i + 3 + length).toString("latin1"));
    i += 3 + length;
  }
  return out;
}

const bytes = fc.string({ unit: "binary", maxLength: 40 }).map(toBytes);
const session = fc.record({
  SSL_PROTOCOL: fc.option(bytes, { nil: undefined }),
  SSL_CIPHER: fc.option(bytes, { nil: undefined }),
  SSL_TLS_SNI_SERVERNAME: fc.option(bytes, { nil: undefined }),
  SSL_ALPN_PROTOCOL: fc.option(bytes, { nil: undefined }),
  SSL_PEER_CERT_HASH: fc.option(fc.constant("SHA256:00"), { nil: undefined }),
  SSL_PEER_CERT_SUBJECT: fc.option(bytes, { nil: undefined }),
});

test("property: any session's TLVs make a header our decoder takes; TLS only with SSL_PROTOCOL, verify 0 only with a verified certificate", () => {
  fc.assert(
    fc.property(session, (facts) => {
      const env: Record<string, string> = {
        PROTO: "TCP",
        TCPREMOTEIP: "192.0.2.7",
        TCPREMOTEPORT: "40000",
        TCPLOCALIP: "192.0.2.1",
        TCPLOCALPORT: "443",
      };
      for (const [k, v] of Object.entries(facts)) if (v !== undefined) env[k] = v;
      const decoded = decodeProxyHeader(envProxyHeader(env, tlsTlvs(env)));
      assert.equal(decoded.state, "ok");
      if (decoded.state !== "ok") return;
      const ssl = decoded.header.tlvs.find((t) => t.type === PP2_TYPE_SSL);
      assert.equal(ssl !== undefined, Boolean(facts.SSL_PROTOCOL));
      if (!ssl) return;
      assert.equal(ssl.value.readUInt32BE(1), facts.SSL_PEER_CERT_HASH ? 0 : 1);
      assert.equal((ssl.value[0] ?? 0) & 0x01, 0x01);
      const subs = subTlvs(ssl.value);
      if (!facts.SSL_PEER_CERT_HASH) assert.equal(subs.has(PP2_SUBTYPE_SSL_CN), false);
      if (facts.SSL_CIPHER) assert.equal(subs.get(0x23), facts.SSL_CIPHER);
    }),
  );
});

test("property: readSslTlv takes any bytes without throwing, and reads back what tlsTlvs wrote", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const read = readSslTlv(bytes);
      assert.equal(read === undefined, bytes.length < 5);
      for (const value of read?.subs.values() ?? []) assert.ok(value.length <= bytes.length);
    }),
  );
  fc.assert(
    fc.property(session, (facts) => {
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(facts)) if (v !== undefined) env[k] = v;
      const ssl = tlsTlvs(env).find((t) => t.type === PP2_TYPE_SSL);
      if (!ssl) return;
      const read = readSslTlv(ssl.value);
      assert.ok(read);
      assert.equal(read.verify, facts.SSL_PEER_CERT_HASH ? 0 : 1);
      if (facts.SSL_PROTOCOL) assert.equal(read.subs.get(0x21), facts.SSL_PROTOCOL);
      if (facts.SSL_CIPHER) assert.equal(read.subs.get(0x23), facts.SSL_CIPHER);
    }),
  );
});
