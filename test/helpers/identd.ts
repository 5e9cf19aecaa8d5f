// A fake RFC 1413 identd for the tests: listens on ADDRESS:113 (we are root), records every
// query line and answers as told (or not at all).
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";

export interface FakeIdentd {
  /** Every query received, as sent (CRLF included), in order. */
  queries: string[];
  /** What to answer to a query line (without its CRLF); undefined: say nothing, keep the line open. */
  answer: (query: string) => string | undefined;
  close(): Promise<void>;
}

export function startIdentd(address: string, port = 113): Promise<FakeIdentd> {
  const sockets = new Set<Socket>();
  const identd: FakeIdentd = {
    queries: [],
    answer: (query) => `${query} : USERID : UNIX : joe\r\n`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let text = "";
    socket.on("data", (b: Buffer) => {
      text += b.toString("latin1");
      const end = text.indexOf("\n");
      if (end === -1) return;
      const line = text.slice(0, end + 1);
      identd.queries.push(line);
      const reply = identd.answer(line.replace(/\r?\n$/, ""));
      if (reply !== undefined) socket.end(reply, "latin1");
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, () => resolve(identd));
  });
}
