// starttls-wrapper as a program of its own (under djb's tcpserver): the client on fds 0/1.
import { runStageProgram } from "../cli/main-stage.ts";
import { USAGE, parseWrapperArgs } from "./options.ts";

runStageProgram({
  name: "starttls-wrapper",
  side: "server",
  usage: USAGE,
  stage: async () => (await import("./stage.ts")).wrapperStage,
  check: parseWrapperArgs,
});
