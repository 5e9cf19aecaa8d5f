// A standalone program's Connection: fds 0/1 (server side) or 6/7 (client side). When both fds
// are one socket (the usual case under tcpserver) one socket handle serves both directions.
import { fstatSync } from "node:fs";
import { Socket } from "node:net";
import { Duplex } from "node:stream";
import type { Connection, Side } from "./stage.ts";

export function stdioConnection(side: Side): Connection {
  const [read, write] = side === "server" ? [0, 1] : [6, 7];
  const r = fstatSync(read);
  const w = fstatSync(write);
  if (r.ino === w.ino && r.dev === w.dev && r.isSocket()) return { fd: read };
  const input = new Socket({ fd: read, readable: true, writable: false, allowHalfOpen: true });
  const output = new Socket({ fd: write, readable: false, writable: true, allowHalfOpen: true });
  return { stream: Duplex.from({ readable: input, writable: output }) };
}
