// acme-challenge as a program of its own (under djb's tcpserver): the client on fds 0/1.
import { runStageProgram } from "../cli/main-stage.ts";
import { USAGE, parseChallengeArgs } from "./options.ts";

runStageProgram({
  name: "acme-challenge",
  side: "server",
  usage: USAGE,
  stage: async () => (await import("./stage.ts")).challengeStage,
  check: parseChallengeArgs,
});
