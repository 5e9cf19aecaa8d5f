// tlsd as a program of its own (under djb's or s6's tcpserver): TLS on fds 0/1.
import { writeSync } from "node:fs";
import { runChain } from "../ucspi/chain.ts";
import { startEnv } from "../ucspi/env.ts";
import { passOnStatus, reportError } from "../ucspi/main.ts";
import { stdioConnection } from "../ucspi/stdio-connection.ts";
import { USAGE, parseTlsdArgs } from "./options.ts";
import { tlsdStage } from "./stage.ts";

const log = (line: string) => {
  try {
    writeSync(2, line);
  } catch {
    // stderr gone.
  }
};

function main(): Promise<number> {
  // The command line is checked before the connection's fds are touched.
  parseTlsdArgs(process.argv.slice(2));
  return tlsdStage.run({
    argv: process.argv.slice(1),
    env: startEnv(process.env),
    connection: stdioConnection("server"),
    side: "server",
    log,
    next: (argv, env, connection) =>
      runChain(argv, env, connection, { side: "server", log, closeOthers: false }),
  });
}

new Promise<number>((resolve) => resolve(main())).then(
  (status) => {
    process.exitCode = passOnStatus(status);
  },
  (error: unknown) => {
    process.exitCode = reportError("tlsd", error, log, USAGE);
  },
);
