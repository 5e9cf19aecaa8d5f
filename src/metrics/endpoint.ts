// tcpserver --metrics: the HTTP endpoint Prometheus scrapes (GET /metrics), on a TCP address or
// a UNIX socket. tcpserver binds it before it drops its privileges; no stage ever opens it.
import { lstatSync, unlinkSync } from "node:fs";
import { createServer } from "node:http";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { addressText } from "./address.ts";
import type { MetricsAddress } from "./address.ts";

export interface Endpoint {
  /** Removes the UNIX socket's file (tcpserver's exit); nothing for a TCP address. */
  removeSocket(): void;
}

/** A scraper has this long for its request (a slow one cannot hold a connection for long). */
const REQUEST_MS = 10_000;
/** How often Node looks for connections past REQUEST_MS (its default, 30 s, let a silent one
 * stay up to 40 s). */
const CHECK_MS = 1_000;
/** Connections at once: Prometheus uses one. At the bound, a new one takes the place of the
 * oldest that is not being answered (silent, slow, or idle between requests), so that clients
 * that connect and send nothing cannot shut the scraper out; only when every one is being
 * answered is the new one closed. */
const MAX_CONNECTIONS = 16;

export async function listenForScrapes(
  address: MetricsAddress,
  contentType: string,
  render: () => Promise<string>,
): Promise<Endpoint> {
  // Each connection, oldest first, and whether a request of it is being answered.
  const open = new Map<Socket, { answering: boolean }>();
  const server = createServer(
    {
      requestTimeout: REQUEST_MS,
      headersTimeout: REQUEST_MS,
      keepAliveTimeout: 5_000,
      connectionsCheckingInterval: CHECK_MS,
    },
    (request, response) => {
      const state = open.get(request.socket);
      if (state) {
        state.answering = true;
        response.once("close", () => (state.answering = false));
      }
      const path = (request.url ?? "").split("?")[0];
      if (path !== "/metrics") {
        response.writeHead(404, { "content-type": "text/plain" }).end("scrape /metrics\n");
        return;
      }
      if (request.method !== "GET" && request.method !== "HEAD") {
        response.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      render().then(
        (text) => {
          response.writeHead(200, {
            "content-type": contentType,
            "content-length": Buffer.byteLength(text),
          });
          response.end(request.method === "HEAD" ? undefined : text);
        },
        (error: unknown) => {
          response.writeHead(500, { "content-type": "text/plain" }).end(`${causeText(error)}\n`);
        },
      );
    },
  );
  server.on("connection", (socket: Socket) => {
    if (open.size >= MAX_CONNECTIONS) {
      const idle = [...open].find(([, state]) => !state.answering)?.[0];
      if (idle === undefined) return socket.destroy();
      idle.destroy();
      open.delete(idle);
    }
    open.set(socket, { answering: false });
    socket.once("close", () => open.delete(socket));
  });
  if ("path" in address) await removeStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) =>
      reject(
        new FatalError(
          `unable to bind metrics address ${addressText(address)}: ${causeText(error)}`,
          111,
          { cause: error },
        ),
      ),
    );
    if ("path" in address) server.listen(address.path, resolve);
    else server.listen(address.port, address.host, resolve);
  });
  return {
    removeSocket() {
      if (!("path" in address)) return;
      try {
        unlinkSync(address.path);
      } catch {
        // Gone already, or its directory is not ours any more (after -u).
      }
    },
  };
}

/** A socket left by a tcpserver that did not exit cleanly (nobody answers on it) is replaced;
 * one in use, or any other file, stays. */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  const cannot = (why: string) => new FatalError(`unable to bind metrics address ${path}: ${why}`);
  if (!isSocket) throw cannot("not a socket");
  const inUse = await new Promise<boolean>((resolve) => {
    const probe = connect(path, () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  // djb's words for EADDRINUSE, as a TCP address in use gets them.
  if (inUse) throw cannot("address already used");
  unlinkSync(path);
}
