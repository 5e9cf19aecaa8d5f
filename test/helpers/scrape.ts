// tcpserver --metrics, read as a client reads it: one GET, and the value of one series.
import { get } from "node:http";
import type { RequestOptions } from "node:http";

export interface Scrape {
  status: number;
  contentType: string;
  body: string;
}

/** GET /metrics (or `path`) over TCP or a UNIX socket. */
export function scrape(where: { port: number } | { socketPath: string }, path = "/metrics") {
  const options: RequestOptions =
    "port" in where ? { host: "127.0.0.1", port: where.port, path } : { ...where, path };
  return new Promise<Scrape>((resolve, reject) => {
    get(options, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          contentType: response.headers["content-type"] ?? "",
          body,
        }),
      );
    }).on("error", reject);
  });
}

/** The value of the series `name{labels}` (exactly those labels), or undefined. */
export function value(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found = [...(m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map(
      ([, key, v]) => [key, v],
    );
    if (JSON.stringify(found.sort()) === wanted) return Number(m[3]);
  }
  return undefined;
}
