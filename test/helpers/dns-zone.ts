// A small DNS server over UDP for tests that need what pebble-challtestsrv does not answer
// (SOA, NS, CNAME: a zone with name servers of its own): it answers A, NS, SOA and TXT queries
// from the records it is given, authoritatively, NXDOMAIN for a name it has nothing at or
// below, and NODATA for one it has other records at or below. TXT records come from a function,
// asked at each query, so that a test's hook can publish them (in files) while it runs.
import { createSocket } from "node:dgram";
import type { RemoteInfo } from "node:dgram";

const TYPES = { A: 1, NS: 2, CNAME: 5, SOA: 6, TXT: 16 } as const;

export interface ZoneRecords {
  a?: Record<string, string[]>;
  ns?: Record<string, string[]>;
  /** A name that is an alias: every query for it is answered with its CNAME alone. */
  cname?: Record<string, string>;
  /** Zone apexes: each gets an SOA. */
  soa?: string[];
  txt?: (name: string) => string[];
}

export interface DnsZone {
  stop(): void;
}

/** Serves `records` on address:port (UDP); resolves once it listens. */
export function serveZone(address: string, port: number, records: ZoneRecords): Promise<DnsZone> {
  const socket = createSocket(address.includes(":") ? "udp6" : "udp4");
  socket.on("message", (query: Buffer, from: RemoteInfo) => {
    const answer = respond(query, records);
    if (answer) socket.send(answer, from.port, from.address);
  });
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, address, () => resolve({ stop: () => socket.close() }));
  });
}

function respond(query: Buffer, records: ZoneRecords): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  while (at < query.length && query[at] !== 0) {
    const length = query[at] ?? 0;
    labels.push(query.subarray(at + 1, at + 1 + length).toString("latin1"));
    at += 1 + length;
  }
  const questionEnd = at + 5;
  if (questionEnd > query.length) return undefined;
  const name = labels.join(".").toLowerCase();
  const asked = query.readUInt16BE(at + 1);
  const alias = records.cname?.[name];
  const type = alias === undefined ? asked : TYPES.CNAME;
  const answers = alias === undefined ? rdataFor(name, type, records) : [encodeName(alias)];
  const known = [
    ...Object.keys(records.a ?? {}),
    ...Object.keys(records.ns ?? {}),
    ...(records.soa ?? []),
  ].some((n) => n === name || n.endsWith(`.${name}`) || name.endsWith(`.${n}`));
  const exists = answers.length > 0 || known || (records.txt?.(name).length ?? 0) > 0;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, AA, RD as asked; RA; NXDOMAIN where nothing is at or below the name.
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | 0x80 | (exists ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  const rrs = answers.map((rdata) => {
    const fixed = Buffer.alloc(12);
    fixed.writeUInt16BE(0xc00c, 0); // the question's name
    fixed.writeUInt16BE(type, 2);
    fixed.writeUInt16BE(1, 4);
    fixed.writeUInt32BE(0, 6);
    fixed.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([fixed, rdata]);
  });
  return Buffer.concat([header, query.subarray(12, questionEnd), ...rrs]);
}

function rdataFor(name: string, type: number, records: ZoneRecords): Buffer[] {
  if (type === TYPES.A)
    return (records.a?.[name] ?? []).map((ip) => Buffer.from(ip.split(".").map(Number)));
  if (type === TYPES.NS) return (records.ns?.[name] ?? []).map(encodeName);
  if (type === TYPES.TXT)
    return (records.txt?.(name) ?? []).map((text) => {
      const bytes = Buffer.from(text, "latin1");
      return Buffer.concat([Buffer.from([bytes.length]), bytes]);
    });
  if (type === TYPES.SOA && records.soa?.includes(name)) {
    const numbers = Buffer.alloc(20);
    [1, 3600, 600, 86400, 0].forEach((n, i) => numbers.writeUInt32BE(n, 4 * i));
    return [Buffer.concat([encodeName(`ns1.${name}`), encodeName(`hostmaster.${name}`), numbers])];
  }
  return [];
}

function encodeName(name: string): Buffer {
  const parts = name.split(".").filter(Boolean);
  return Buffer.concat([
    ...parts.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])),
    Buffer.from([0]),
  ]);
}
