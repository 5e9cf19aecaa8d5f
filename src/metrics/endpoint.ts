// tcpserver --metrics: the HTTP endpoint Prometheus scrapes (GET /metrics), on a TCP address or
// a UNIX socket. tcpserver binds it before it drops its privileges; no stage ever opens it.
import { lstatSync, unlinkSync } from "node:fs";
import { createServer } from "node:http";
import { connect } from "node:net";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { addressText } from "./address.ts";
import type { MetricsAddress } from "./address.ts";

export interface Endpoint {
  /** Removes the UNIX socket's file (tcpserver's exit); nothing for a TCP address. */
  removeSocket(): void;
}

/** A scraper has this long for its request (a slow one cannot hold a connection for long). */
const REQUEST_MS = 10_000;
/** Scrapers at once: Prometheus uses one; more wait in the backlog. */
const MAX_CONNECTIONS = 16;

export async function listenForScrapes(
  address: MetricsAddress,
  contentType: string,
  render: () => Promise<string>,
): Promise<Endpoint> {
  const server = createServer(
    { requestTimeout: REQUEST_MS, headersTimeout: REQUEST_MS, keepAliveTimeout: 5_000 },
    (request, response) => {
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
  server.maxConnections = MAX_CONNECTIONS;
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
