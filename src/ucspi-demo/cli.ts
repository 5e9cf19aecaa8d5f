// ucspi-demo as a program of its own (under djb's tcpserver, say).
import { runStageProgram } from "../cli/main-stage.ts";

runStageProgram({
  name: "ucspi-demo",
  side: "server",
  usage: "ucspi-demo [ smtp | http ]",
  stage: async () => (await import("./stage.ts")).demoStage,
});
