// tlsd as a program of its own (under djb's or s6's tcpserver): TLS on fds 0/1.
import { runStageProgram } from "../cli/main-stage.ts";
import { USAGE, parseTlsdArgs } from "./options.ts";

runStageProgram({
  name: "tlsd",
  side: "server",
  usage: USAGE,
  stage: async () => (await import("./stage.ts")).tlsdStage,
  check: parseTlsdArgs,
});
