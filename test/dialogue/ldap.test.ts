// The LDAP first-message reader (src/dialogue/ldap.ts): properties over any bytes, StartTLS
// requests in every BER length form, and the answers as libldap reads them.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  MAX_FIRST_MESSAGE,
  STARTTLS_OID,
  noticeOfDisconnection,
  readFirstMessage,
  startTlsResponse,
} from "../../src/dialogue/ldap.ts";

/** A TLV with its length in the short form, or in `longBytes` bytes (BER allows both). */
function tlv(tag: number, value: Buffer, longBytes = 0): Buffer {
  if (longBytes === 0 && value.length < 0x80)
    return Buffer.concat([Buffer.from([tag, value.length]), value]);
  const n = Math.max(longBytes, value.length < 0x100 ? 1 : 2);
  const length = Buffer.alloc(n);
  length.writeUIntBE(value.length, 0, n);
  return Buffer.concat([Buffer.from([tag, 0x80 | n]), length, value]);
}

function integer(n: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(n, 1);
  let i = 0;
  while (i < 4 && b[i] === 0 && ((b[i + 1] ?? 0) & 0x80) === 0) i++;
  return b.subarray(i);
}

const startTls = (id: number, longBytes: number, controls = Buffer.alloc(0)) =>
  tlv(
    0x30,
    Buffer.concat([
      tlv(0x02, integer(id)),
      tlv(0x77, tlv(0x80, Buffer.from(STARTTLS_OID)), longBytes),
      controls,
    ]),
    longBytes,
  );

test("any bytes: a verdict, never a throw; 'more' asks for more than there is", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      const r = readFirstMessage(bytes);
      if (r.kind === "more") assert.ok(r.need > bytes.length && r.need <= MAX_FIRST_MESSAGE);
    }),
    { numRuns: 3000 },
  );
});

test("StartTLS in every length form and messageID: found, with what follows counted; every prefix asks for more", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.integer({ min: 0, max: 3 }),
      fc.uint8Array({ maxLength: 30 }),
      (id, longBytes, after) => {
        const message = startTls(id, longBytes);
        for (let cut = 0; cut < message.length; cut++)
          assert.equal(readFirstMessage(message.subarray(0, cut)).kind, "more");
        assert.deepEqual(readFirstMessage(Buffer.concat([message, after])), {
          kind: "starttls",
          messageId: id,
          length: message.length,
          extra: after.length,
        });
      },
    ),
    { numRuns: 300 },
  );
});

test("other requests go to the server; broken BER is refused", () => {
  const bind = tlv(
    0x30,
    Buffer.concat([tlv(0x02, integer(1)), tlv(0x60, Buffer.from([2, 1, 3, 4, 0, 0x80, 0]))]),
  );
  assert.deepEqual(readFirstMessage(bind), { kind: "other", op: 0x60 });
  const whoami = tlv(
    0x30,
    Buffer.concat([
      tlv(0x02, integer(1)),
      tlv(0x77, tlv(0x80, Buffer.from("1.3.6.1.4.1.4203.1.11.3"))),
    ]),
  );
  assert.deepEqual(readFirstMessage(whoami), { kind: "other", op: 0x77 });
  assert.equal(readFirstMessage(Buffer.from("GET / HTTP/1.0\r\n\r\n")).kind, "malformed");
  assert.equal(readFirstMessage(Buffer.from([0x30, 0x80, 0, 0])).kind, "malformed"); // indefinite
  assert.equal(
    readFirstMessage(Buffer.from([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff])).kind,
    "malformed",
  );
  assert.equal(readFirstMessage(tlv(0x30, tlv(0x02, Buffer.from([0xff])))).kind, "malformed");
});

test("the answers: StartTLS success for the request's messageID, and the Notice of Disconnection", () => {
  // SEQUENCE { INTEGER 7, [APPLICATION 24] { ENUMERATED 0, "", "", [10] the OID } }
  assert.equal(
    startTlsResponse(7).toString("hex"),
    "302402010778" + "1f0a0100040004008a16" + Buffer.from(STARTTLS_OID).toString("hex"),
  );
  const notice = noticeOfDisconnection(13, "StartTLS is required");
  assert.equal(notice[4], 0); // messageID 0: unsolicited
  assert.equal(readFirstMessage(notice).kind, "other");
  assert.match(notice.toString("latin1"), /StartTLS is required.*1\.3\.6\.1\.4\.1\.1466\.20036$/s);
});
