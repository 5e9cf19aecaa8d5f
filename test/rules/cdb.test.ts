// The cdb reader and writer: round trips, byte identity with djb's tcprules, and corrupt files.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  CdbFormatError,
  cdbFind,
  cdbFindAll,
  cdbHash,
  cdbMake,
  cdbRecords,
} from "../../src/rules/cdb.ts";
import type { CdbRecord } from "../../src/rules/cdb.ts";
import { djb } from "../helpers/programs.ts";
import { compile } from "../helpers/rules.ts";
import { scratchDir } from "../helpers/scratch.ts";

const work = scratchDir("cdb");

const b = (text: string) => Buffer.from(text, "latin1");

/** Records with keys from a small alphabet, so duplicates and shared hash tables are common. */
const recordsArb = fc.array(
  fc
    .tuple(
      fc.uint8Array({ maxLength: 3 }).map((a) => Buffer.from(a.map((x) => x % 4))),
      fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
    )
    .map(([key, data]): CdbRecord => ({ key, data })),
  { maxLength: 120 },
);

test("cdbHash: djb's h = h * 33 ^ c from 5381, modulo 2^32", () => {
  assert.equal(cdbHash(b("")), 5381);
  assert.equal(cdbHash(b("a")), (5381 * 33) ^ 97);
  let h = 5381;
  for (const c of b("127.0.0.1")) h = Number((BigInt(h) * 33n) % 2n ** 32n) ^ c;
  assert.equal(cdbHash(b("127.0.0.1")), h >>> 0);
  // Long keys wrap and stay unsigned.
  const long = Buffer.alloc(1000, 0xff);
  assert.ok(cdbHash(long) >= 0 && cdbHash(long) < 2 ** 32);
});

test("cdbMake then cdbFind/cdbFindAll: every key, duplicates in order, empty keys", () => {
  fc.assert(
    fc.property(recordsArb, fc.uint8Array({ maxLength: 3 }), (records, probe) => {
      const cdb = cdbMake(records);
      assert.deepEqual(cdbRecords(cdb), records);
      const byKey = new Map<string, Buffer[]>();
      for (const { key, data } of records) {
        const list = byKey.get(key.toString("hex")) ?? [];
        list.push(data);
        byKey.set(key.toString("hex"), list);
      }
      for (const [hex, datas] of byKey) {
        const key = Buffer.from(hex, "hex");
        assert.deepEqual(cdbFindAll(cdb, key), datas);
        assert.deepEqual(cdbFind(cdb, key), datas[0]);
      }
      const absent = Buffer.from(probe);
      if (!byKey.has(absent.toString("hex"))) {
        assert.equal(cdbFind(cdb, absent), undefined);
        assert.deepEqual(cdbFindAll(cdb, absent), []);
      }
    }),
    { numRuns: 300 },
  );
});

test("cdbMake: an empty database is the header alone, every table empty", () => {
  const cdb = cdbMake([]);
  assert.equal(cdb.length, 2048);
  for (let i = 0; i < 256; i++) {
    assert.equal(cdb.readUInt32LE(i * 8), 2048);
    assert.equal(cdb.readUInt32LE(i * 8 + 4), 0);
  }
  assert.equal(cdbFind(cdb, b("")), undefined);
});

/** Keys tcprules stores as they are: no newline, colon or dash, no leading #, no space at the end. */
const plainKey = fc
  .array(fc.constantFrom(..."0123456789.=@abcxyz \t\x00\xe9"), { maxLength: 12 })
  .map((chars) => b(chars.join("")))
  .filter((key) => key[0] !== 0x23);

test("cdbMake writes the same bytes as djb's tcprules for the same records", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ key: plainKey, value: fc.stringMatching(/^[a-z =,]{0,6}$/) }), {
        maxLength: 300,
      }),
      async (rows) => {
        // Each row is the line KEY:allow,V="VALUE", which djb stores as KEY -> +V=VALUE\0.
        const text = Buffer.concat(
          rows.flatMap(({ key, value }) => [key, b(`:allow,V="${value}"\n`)]),
        );
        const records = rows.map(({ key, value }) => ({ key, data: b(`+V=${value}\0`) }));
        const compiled = await compile(djb("tcprules"), text, work);
        assert.equal(compiled.code, 0, compiled.stderr);
        assert.ok(compiled.cdb);
        assert.deepEqual(cdbMake(records), compiled.cdb);
      },
    ),
    { numRuns: 40 },
  );
});

test("cdbMake matches djb past 1000 records (djb keeps them in blocks of 1000)", async () => {
  const lines: string[] = [];
  const records: CdbRecord[] = [];
  for (let i = 0; i < 3000; i++) {
    const key = `10.${i % 700}.${i % 3}`;
    lines.push(`${key}:allow,N="${i}"\n`);
    records.push({ key: b(key), data: b(`+N=${i}\0`) });
  }
  const compiled = await compile(djb("tcprules"), b(lines.join("")), work);
  assert.equal(compiled.code, 0, compiled.stderr);
  assert.ok(compiled.cdb);
  assert.deepEqual(cdbMake(records), compiled.cdb);
  assert.deepEqual(cdbFindAll(compiled.cdb, b("10.5.2")), [b("+N=5\0"), b("+N=2105\0")]);
});

/** A cdb, then damaged: bytes overwritten (often in u32 fields), and maybe cut short. */
const corruptArb = fc
  .tuple(
    recordsArb,
    fc.array(
      fc.record({
        at: fc.nat(),
        value: fc.oneof(
          fc.constantFrom(0, 1, 0xff, 0xffffffff, 0x7fffffff, 2048, 2040),
          fc.nat({ max: 0xffffffff }),
          fc.nat({ max: 4096 }),
        ),
      }),
      { maxLength: 6 },
    ),
    fc.option(fc.nat()),
  )
  .map(([records, edits, cut]) => {
    const cdb = Buffer.from(cdbMake(records));
    for (const { at, value } of edits) {
      const pos = at % Math.max(1, cdb.length - 3);
      if (pos + 4 <= cdb.length) cdb.writeUInt32LE(value >>> 0, pos);
    }
    return cut === null ? cdb : cdb.subarray(0, cut % (cdb.length + 1));
  });

test("a corrupt or truncated cdb only ever throws CdbFormatError, and lookups end", () => {
  fc.assert(
    fc.property(corruptArb, fc.uint8Array({ maxLength: 3 }), (cdb, probe) => {
      const keys = [Buffer.from(probe), b(""), b("\x00"), b("\x01\x02")];
      for (const key of keys) {
        for (const look of [cdbFind, cdbFindAll]) {
          try {
            look(cdb, key);
          } catch (error) {
            assert.ok(error instanceof CdbFormatError, String(error));
            assert.equal(error.code, "ECDBFORMAT");
          }
        }
      }
      try {
        cdbRecords(cdb);
      } catch (error) {
        assert.ok(error instanceof CdbFormatError, String(error));
      }
    }),
    { numRuns: 2000 },
  );
});

test("CdbFormatError speaks djb's errno text: protocol error, or invalid argument when empty", () => {
  const cases: [Buffer, string][] = [
    [Buffer.alloc(0), "invalid argument"],
    [Buffer.alloc(1), "protocol error"],
    [Buffer.alloc(8), "protocol error"],
  ];
  for (const [cdb, message] of cases) {
    assert.throws(() => cdbFind(cdb, b("1.2.3.4")), { name: "CdbFormatError", message });
  }
  // A table that claims 2^32-1 slots, its probe starting at byte 2048 of a file of busy slots
  // (hash 0x01010101, position 0x01010101): the lookup walks to the end of the file and stops.
  const busy = Buffer.alloc(2048 + 8 * 1000, 1);
  busy.fill(0, 0, 2048);
  const h = cdbHash(b("k"));
  const slots = 0xffffffff;
  busy.writeUInt32LE((2048 - ((h >>> 8) % slots) * 8 + 2 ** 32) % 2 ** 32, (h & 255) * 8);
  busy.writeUInt32LE(slots, (h & 255) * 8 + 4);
  assert.throws(() => cdbFindAll(busy, b("k")), {
    name: "CdbFormatError",
    message: "protocol error",
  });
  // A header of zeros with only 2047 bytes: djb finds nothing for keys whose table is present.
  assert.equal(cdbFind(Buffer.alloc(2047), b("1.2.3.4")), undefined);
});
