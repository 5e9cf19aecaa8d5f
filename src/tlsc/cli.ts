// tlsc as a program of its own (under djb's or s6's tcpclient): TLS on fds 6/7 (or -6/-7).
import { runStageProgram } from "../cli/main-stage.ts";
import { USAGE, parseTlscArgs } from "./options.ts";

runStageProgram({
  name: "tlsc",
  side: "client",
  usage: USAGE,
  stage: async () => (await import("./stage.ts")).tlscStage,
  check: parseTlscArgs,
  fds: (args) => {
    const options = parseTlscArgs(args);
    return [options.readFd, options.writeFd];
  },
});
