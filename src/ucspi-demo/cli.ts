// ucspi-demo as a program of its own (under djb's tcpserver, say).
import { writeSync } from "node:fs";
import { runChain } from "../ucspi/chain.ts";
import { startEnv } from "../ucspi/env.ts";
import { passOnStatus, reportError } from "../ucspi/main.ts";
import { stdioConnection } from "../ucspi/stdio-connection.ts";
import { demoStage } from "./stage.ts";

const log = (line: string) => writeSync(2, line);
const env = startEnv(process.env);
demoStage
  .run({
    argv: process.argv.slice(1),
    env,
    connection: stdioConnection("server"),
    side: "server",
    log,
    next: (argv, nextEnv, connection) =>
      runChain(argv, nextEnv, connection, { side: "server", log, closeOthers: false }),
  })
  .then(
    (status) => {
      process.exitCode = passOnStatus(status);
    },
    (error: unknown) => {
      process.exitCode = reportError("ucspi-demo", error, log);
    },
  );
