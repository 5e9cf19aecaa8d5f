// tlsd as a program of its own (under djb's or s6's tcpserver): TLS on fds 0/1.
import { writeSync } from "node:fs";
import { runChain } from "../ucspi/chain.ts";
import { startEnv } from "../ucspi/env.ts";
import { passOnStatus, reportError } from "../ucspi/main.ts";
import { stdioConnection } from "../ucspi/stdio-connection.ts";
import { tlsdStage } from "./stage.ts";

const log = (line: string) => {
  try {
    writeSync(2, line);
  } catch {
    // stderr gone.
  }
};

tlsdStage
  .run({
    argv: process.argv.slice(1),
    env: startEnv(process.env),
    connection: stdioConnection("server"),
    side: "server",
    log,
    next: (argv, env, connection) =>
      runChain(argv, env, connection, { side: "server", log, closeOthers: false }),
  })
  .then(
    (status) => {
      process.exitCode = passOnStatus(status);
    },
    (error: unknown) => {
      process.exitCode = reportError("tlsd", error, log);
    },
  );
