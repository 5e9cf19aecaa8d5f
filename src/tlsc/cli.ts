// tlsc as a program of its own (under djb's or s6's tcpclient): TLS on fds 6/7 (or -6/-7).
import { writeSync } from "node:fs";
import { runChain } from "../ucspi/chain.ts";
import { startEnv } from "../ucspi/env.ts";
import { passOnStatus, reportError } from "../ucspi/main.ts";
import { stdioConnection } from "../ucspi/stdio-connection.ts";
import { USAGE, parseTlscArgs } from "./options.ts";
import { tlscStage } from "./stage.ts";

const log = (line: string) => {
  try {
    writeSync(2, line);
  } catch {
    // stderr gone.
  }
};

function main(): Promise<number> {
  // The command line is checked before the connection's fds are touched.
  const options = parseTlscArgs(process.argv.slice(2));
  return tlscStage.run({
    argv: process.argv.slice(1),
    env: startEnv(process.env),
    connection: stdioConnection("client", [options.readFd, options.writeFd]),
    side: "client",
    log,
    next: (argv, env, connection) =>
      runChain(argv, env, connection, { side: "client", log, closeOthers: false }),
  });
}

new Promise<number>((resolve) => resolve(main())).then(
  (status) => {
    process.exitCode = passOnStatus(status);
  },
  (error: unknown) => {
    process.exitCode = reportError("tlsc", error, log, USAGE);
  },
);
