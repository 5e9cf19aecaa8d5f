// cdb, djb's constant database (the rules.cdb format of tcprules): a reader that behaves like
// ucspi-tcp's cdb_findnext, and a writer that produces the same bytes as its cdb_make.
//
// Layout: a 2048-byte header of 256 (table position, slot count) pairs; the records (klen, dlen,
// key, data) from byte 2048 in insertion order; then the 256 hash tables, each a run of
// (hash, record position) slots, twice as many slots as it has entries. All numbers are u32 LE.

/** A corrupt or truncated cdb: a read that falls outside the file. */
export class CdbFormatError extends Error {
  readonly code = "ECDBFORMAT";
  /** What was out of range, for debugging; `message` is djb's errno text. */
  readonly detail: string;
  override name = "CdbFormatError";
  constructor(detail: string, message = "protocol error") {
    // djb's reader sets errno to EPROTO here, so its programs say "protocol error"; it cannot
    // read an empty file at all and says "invalid argument" (EINVAL from mmap).
    super(message);
    this.detail = detail;
  }
}

/** A cdb that would not fit the 32-bit offsets of the format. */
export class CdbTooLargeError extends Error {
  readonly code = "ECDBTOOLARGE";
  override name = "CdbTooLargeError";
  constructor() {
    super("cdb would reach 4 GiB, the format's limit");
  }
}

export interface CdbRecord {
  key: Buffer;
  data: Buffer;
}

const HEADER = 2048;
const LIMIT = 2 ** 32;

/** djb's cdb hash: h = 5381, then h = (h * 33) ^ byte, modulo 2^32. */
export function cdbHash(key: Uint8Array): number {
  let h = 5381;
  for (const c of key) h = (((h << 5) + h) ^ c) >>> 0;
  return h;
}

/** The `len` bytes at `pos`, or CdbFormatError when they are not all inside the file. */
function read(cdb: Buffer, pos: number, len: number): Buffer {
  if (cdb.length === 0) throw new CdbFormatError("empty file", "invalid argument");
  if (pos > cdb.length || cdb.length - pos < len) {
    throw new CdbFormatError(`read of ${len} bytes at ${pos} beyond the end (${cdb.length})`);
  }
  return cdb.subarray(pos, pos + len);
}

function u32(cdb: Buffer, pos: number): number {
  return read(cdb, pos, 4).readUInt32LE(0);
}

/** Whether the `key.length` bytes at `pos` are `key`, compared 32 bytes at a time as djb does. */
function keyAt(cdb: Buffer, key: Uint8Array, pos: number): boolean {
  for (let done = 0; done < key.length; done += 32) {
    const n = Math.min(32, key.length - done);
    const chunk = read(cdb, (pos + done) % LIMIT, n);
    if (Buffer.compare(chunk, key.subarray(done, done + n)) !== 0) return false;
  }
  return true;
}

/**
 * The data of every record whose key is `key`, in the order djb's cdb_findnext returns them
 * (for files written by cdbMake: insertion order). Stops after `limit` matches. Throws only
 * CdbFormatError; terminates on any input (at most one probe per slot of one table).
 */
function find(cdb: Buffer, key: Uint8Array, limit: number): Buffer[] {
  const found: Buffer[] = [];
  const h = cdbHash(key);
  const table = read(cdb, (h & 255) * 8, 8);
  const slots = table.readUInt32LE(4);
  if (slots === 0) return found;
  const start = table.readUInt32LE(0);
  const end = (start + slots * 8) % LIMIT;
  let kpos = (start + ((h >>> 8) % slots) * 8) % LIMIT;
  for (let loop = 0; loop < slots && found.length < limit; loop++) {
    const slot = read(cdb, kpos, 8);
    const recpos = slot.readUInt32LE(4);
    if (recpos === 0) break;
    kpos = (kpos + 8) % LIMIT;
    if (kpos === end) kpos = start;
    if (slot.readUInt32LE(0) !== h) continue;
    const head = read(cdb, recpos, 8);
    if (head.readUInt32LE(0) !== key.length) continue;
    const keyPos = (recpos + 8) % LIMIT;
    if (!keyAt(cdb, key, keyPos)) continue;
    found.push(read(cdb, (keyPos + key.length) % LIMIT, head.readUInt32LE(4)));
  }
  return found;
}

/** The data of the first record with this key (what tcpserver uses), or undefined. */
export function cdbFind(cdb: Buffer, key: Uint8Array): Buffer | undefined {
  return find(cdb, key, 1)[0];
}

/** The data of every record with this key, first one first. */
export function cdbFindAll(cdb: Buffer, key: Uint8Array): Buffer[] {
  return find(cdb, key, Infinity);
}

/**
 * Every record in file order, as djb's cdbdump lists them: from byte 2048 up to the position
 * of hash table 0. Throws CdbFormatError for a record that runs past that point.
 */
export function cdbRecords(cdb: Buffer): CdbRecord[] {
  const records: CdbRecord[] = [];
  const end = u32(cdb, 0);
  let pos = HEADER;
  while (pos < end) {
    if (end - pos < 8) throw new CdbFormatError(`record header at ${pos} crosses ${end}`);
    const head = read(cdb, pos, 8);
    const klen = head.readUInt32LE(0);
    const dlen = head.readUInt32LE(4);
    if (klen + dlen > end - pos - 8) throw new CdbFormatError(`record at ${pos} crosses ${end}`);
    const key = read(cdb, pos + 8, klen);
    const data = read(cdb, pos + 8 + klen, dlen);
    records.push({ key, data });
    pos += 8 + klen + dlen;
  }
  return records;
}

/**
 * A cdb holding `records` in this order, byte for byte what djb's cdb_make writes for the same
 * cdb_make_add calls (so tcprules and our tcprules give identical files). Duplicate keys are
 * all kept. Throws CdbTooLargeError when the file would not fit 32-bit offsets.
 */
export function cdbMake(records: readonly CdbRecord[]): Buffer {
  let size = HEADER;
  for (const { key, data } of records) size += 8 + key.length + data.length;
  size += records.length * 2 * 8;
  if (size >= LIMIT) throw new CdbTooLargeError();

  const out = Buffer.alloc(size);
  const buckets: { hash: number; pos: number }[][] = Array.from({ length: 256 }, () => []);
  let pos = HEADER;
  for (const { key, data } of records) {
    const hash = cdbHash(key);
    buckets[hash & 255]?.push({ hash, pos });
    out.writeUInt32LE(key.length, pos);
    out.writeUInt32LE(data.length, pos + 4);
    key.copy(out, pos + 8);
    data.copy(out, pos + 8 + key.length);
    pos += 8 + key.length + data.length;
  }

  for (let i = 0; i < 256; i++) {
    const entries = buckets[i] ?? [];
    const slots = entries.length * 2;
    out.writeUInt32LE(pos, i * 8);
    out.writeUInt32LE(slots, i * 8 + 4);
    const taken = new Uint8Array(slots);
    for (const { hash, pos: recpos } of entries) {
      let where = (hash >>> 8) % slots;
      while (taken[where]) if (++where === slots) where = 0;
      taken[where] = 1;
      out.writeUInt32LE(hash, pos + where * 8);
      out.writeUInt32LE(recpos, pos + where * 8 + 4);
    }
    pos += slots * 8;
  }
  return out;
}
