// tls-sniff as a program of its own (under djb's tcpserver, or in a pipeline): fds 0/1.
import { runStageProgram } from "../cli/main-stage.ts";
import { USAGE, parseSniffArgs } from "./options.ts";

runStageProgram({
  name: "tls-sniff",
  side: "server",
  usage: USAGE,
  stage: async () => (await import("./stage.ts")).sniffStage,
  check: parseSniffArgs,
});
