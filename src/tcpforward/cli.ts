// tcpforward as a program of its own (under djb's tcpserver): the client on fds 0/1.
import { runStageProgram } from "../cli/main-stage.ts";
import { USAGE, parseForwardArgs } from "./options.ts";

runStageProgram({
  name: "tcpforward",
  side: "server",
  usage: USAGE,
  stage: async () => (await import("./stage.ts")).forwardStage,
  check: parseForwardArgs,
});
