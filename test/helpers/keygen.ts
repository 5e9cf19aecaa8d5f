// Running bin/tls-keygen and the real openssl on what it writes, in a scratch directory.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { connect, createServer } from "node:tls";
import { ours, run } from "./programs.ts";
import type { RunResult } from "./programs.ts";
import { scratchDir } from "./scratch.ts";

/** A scratch directory (see scratch.ts), and `path` for the files in it. */
export function workDir(name: string): { dir: string; path: (file: string) => string } {
  const dir = scratchDir(name);
  return { dir, path: (file) => join(dir, file) };
}

/** bin/tls-keygen with these arguments, in `cwd`. */
export function keygen(args: readonly string[], cwd?: string): Promise<RunResult> {
  return run(ours("tls-keygen"), args, { ...(cwd ? { cwd } : {}) });
}

/** Asserts a clean run: exit 0, nothing on stdout or stderr. */
export async function keygenOk(args: readonly string[], cwd?: string): Promise<void> {
  const result = await keygen(args, cwd);
  if (result.code !== 0 || result.stdout !== "" || result.stderr !== "") {
    throw new Error(`tls-keygen ${args.join(" ")}: exit ${result.code}\n${result.stderr}`);
  }
}

export interface OpensslResult {
  code: number;
  out: string;
}

/** openssl with these arguments: exit code and stdout + stderr. */
export function openssl(args: readonly string[]): Promise<OpensslResult> {
  return new Promise((resolve) => {
    execFile("openssl", args, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

/** `openssl x509 -text -noout` of a certificate file. */
export async function certText(file: string): Promise<string> {
  const result = await openssl(["x509", "-in", file, "-noout", "-text"]);
  if (result.code !== 0) throw new Error(`openssl x509 ${file}: ${result.out}`);
  return result.out;
}

/** A TLS server with the pair on 127.0.0.1:0 and a client trusting only `ca`; both ends' view. */
export async function handshake(
  pair: { cert: string; key: string },
  ca: string,
  servername: string | undefined,
  client?: { cert: string; key: string },
): Promise<{ authorized: boolean; protocol: string | null; peerCN: string | undefined }> {
  const server = createServer({
    cert: readFileSync(pair.cert),
    key: readFileSync(pair.key),
    ...(client ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(ca) } : {}),
  });
  let peerCN: string | undefined;
  server.on("secureConnection", (socket) => {
    peerCN = socket.getPeerCertificate().subject?.CN as string | undefined;
    socket.end("hello\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise((resolve, reject) => {
      const socket = connect({
        host: "127.0.0.1",
        port,
        ca: readFileSync(ca),
        ...(servername ? { servername } : {}),
        ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
      });
      socket.on("error", reject);
      socket.on("data", () => {
        resolve({ authorized: socket.authorized, protocol: socket.getProtocol(), peerCN });
        socket.end();
      });
    });
  } finally {
    server.close();
  }
}
