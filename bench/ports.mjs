// Ports for the bench's own scripts: a free one on loopback, and a wait until a server listens.
import { once } from "node:events";
import { createConnection, createServer } from "node:net";

/** A port of 127.0.0.1 that nothing listens on now (the kernel's choice). */
export async function freePort() {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address();
  s.close();
  await once(s, "close");
  return port;
}

/** Resolves once something accepts on 127.0.0.1:`port`, tried every 50 ms, 10 s at most. The
 * probe is a connection: a TLS server logs its end as a handshake that failed. */
export async function listening(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const c = createConnection(port, "127.0.0.1");
      c.on("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}
