// `ucspi-demo http`: answers one HTTP/1.x request with a short text page saying how the
// request came (address, TLS or plaintext, SNI and ALPN as tls-sniff and tlsd saw them), then
// closes. Enough for curl and browsers to try the one-port recipe (tls-sniff) with.
import type { Duplex } from "node:stream";
import type { Env } from "../ucspi/env.ts";

/** The most header bytes read before answering 431. */
const MAX_HEAD = 16 * 1024;

export async function httpPage(stream: Duplex, env: Readonly<Env>): Promise<void> {
  const head = await readHead(stream);
  if (head === undefined) return;
  const [method = "", target = ""] = (head.split("\r\n")[0] ?? "").split(" ");
  if (head.length > MAX_HEAD) return answer(stream, 431, "request header too large\n");
  if (method !== "GET" && method !== "HEAD") return answer(stream, 405, "GET only\n");
  const lines = [
    `hello from ucspi-tls: ${method} ${target}`,
    `client: ${env["TCPREMOTEIP"] ?? "unknown"} port ${env["TCPREMOTEPORT"] ?? "?"}`,
    env["SSL_PROTOCOL"]
      ? `tls: ${env["SSL_PROTOCOL"]} ${env["SSL_CIPHER"] ?? ""}`
      : "tls: none (plaintext)",
  ];
  if (env["TLS_SNIFF"]) lines.push(`tls-sniff: ${env["TLS_SNIFF"]}`);
  if (env["SSL_TLS_SNI_SERVERNAME"]) lines.push(`sni: ${env["SSL_TLS_SNI_SERVERNAME"]}`);
  if (env["TLS_SNIFF_ALPN"]) lines.push(`alpn offered: ${env["TLS_SNIFF_ALPN"]}`);
  answer(stream, 200, `${lines.join("\n")}\n`, method === "HEAD");
}

function answer(stream: Duplex, status: number, body: string, headOnly = false): void {
  const reason: Record<number, string> = { 200: "OK", 405: "Method Not Allowed", 431: "Too Large" };
  stream.write(
    `HTTP/1.1 ${status} ${reason[status] ?? ""}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body, "latin1")}\r\nConnection: close\r\n\r\n` +
      (headOnly ? "" : body),
  );
}

/** The request head (up to the blank line, or MAX_HEAD + 1 bytes); undefined at EOF first. */
function readHead(stream: Duplex): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = "";
    const done = (value: string | undefined) => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.pause();
      resolve(value);
    };
    const onData = (chunk: string) => {
      text += chunk; // latin1 (stage.ts)
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) done(text.slice(0, end));
      else if (text.length > MAX_HEAD) done(text);
    };
    const onEnd = () => done(text === "" ? undefined : text);
    stream.on("data", onData);
    stream.once("end", onEnd);
  });
}
