// strace as a test peer: the system calls a running server makes while a client works it.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { makePki } from "./certs.ts";
import { BIN, ours, run } from "./programs.ts";
import { startServer } from "./server.ts";

/** A TLS client (python3) that sends a line and reads its echo `exchanges` times through
 * 127.0.0.1:`port`, then prints "ok". */
const pingPong = (port: number, ca: string, exchanges: number) => `
import socket, ssl
ctx = ssl.create_default_context(cafile=${JSON.stringify(ca)})
with socket.create_connection(("127.0.0.1", ${port})) as raw:
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    for i in range(${exchanges}):
        line = b"ping %d\\n" % i
        tls.sendall(line)
        got = b""
        while not got.endswith(b"\\n"):
            got += tls.recv(100)
        assert got == line, got
    tls.close()
print("ok")
`;

/** strace on every thread of `pid` with `filters` (-e arguments), into `file`; resolves once it
 * is attached, with a function that ends it and gives the lines it wrote. */
async function straceOf(
  pid: number,
  filters: string[],
  file: string,
): Promise<() => Promise<string[]>> {
  const strace = spawn(
    "strace",
    ["-f", ...filters.flatMap((f) => ["-e", f]), "-o", file, "-p", `${pid}`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  // strace says "Process N attached" on stderr once it traces the process.
  await new Promise<void>((resolve, reject) => {
    let said = "";
    strace.stderr.setEncoding("latin1");
    strace.stderr.on("data", (text: string) => {
      said += text;
      if (/attached/.test(said)) resolve();
    });
    strace.on("exit", () => reject(new Error(`strace ended: ${said}`)));
  });
  return async () => {
    strace.kill("SIGINT");
    await new Promise((resolve) => strace.on("close", resolve));
    return readFileSync(file, "latin1").split("\n");
  };
}

/** What strace with `filters` wrote of our tcpserver running tlsd in-process with cat behind
 * it, while a TLS client sends `exchanges` lines one by one and reads each echo (it must get
 * them all back). */
export async function traceTlsdEchoes(filters: string[], exchanges: number): Promise<string[]> {
  const pki = makePki();
  const pair = pki.server("localhost", ["localhost"]);
  const s = await startServer(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
    env: { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: pair.cert, KEYFILE: pair.key },
  });
  try {
    const stop = await straceOf(s.child.pid as number, filters, join(pki.dir, "trace.strace"));
    const client = await run("python3", ["-c", pingPong(s.port, pki.ca.cert, exchanges)]);
    const lines = await stop();
    assert.equal(client.stdout, "ok\n", client.stderr);
    return lines;
  } finally {
    await s.stop();
  }
}
