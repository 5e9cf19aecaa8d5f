// strace as a test peer: the system calls a running server makes while a client works it.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

/** A TLS client (python3) that sends a line and reads its echo `exchanges` times through
 * 127.0.0.1:`port`, then prints "ok". */
export const pingPong = (port: number, ca: string, exchanges: number) => `
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
export async function straceOf(
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
