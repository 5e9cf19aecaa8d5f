// Which programs are ours, and how to load each one's stage for the in-process chain.
import { realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { osPath } from "./os-string.ts";
import { onReload } from "./reload.ts";
import type { Stage } from "./stage.ts";

type StageLoader = () => Promise<Stage>;

// Only programs that work on a connection are stages; tcprules and friends are not.
const STAGES: Record<string, StageLoader> = {
  "ucspi-demo": async () => (await import("../ucspi-demo/stage.ts")).demoStage,
  tlsd: async () => (await import("../tlsd/stage.ts")).tlsdStage,
  tlsc: async () => (await import("../tlsc/stage.ts")).tlscStage,
  "starttls-wrapper": async () => (await import("../starttls-wrapper/stage.ts")).wrapperStage,
  "tls-sniff": async () => (await import("../tls-sniff/stage.ts")).sniffStage,
  "acme-challenge": async () => (await import("../acme-challenge/stage.ts")).challengeStage,
  tcpforward: async () => (await import("../tcpforward/stage.ts")).forwardStage,
};

let launcher: string | undefined;

/** The real path of build/ucspi-launch, which every bin/ program is a symlink to. */
export function ourLauncher(): string {
  if (launcher !== undefined) return launcher;
  let dir = dirname(fileURLToPath(import.meta.url));
  launcher = "";
  for (let i = 0; i < 4; i++) {
    try {
      launcher = realpathSync.native(join(dir, "build", "ucspi-launch"));
      break;
    } catch {
      dir = dirname(dir);
    }
  }
  return launcher;
}

/** Each stage while it loads, then the stage itself: a connection that comes after the load
 * finds its stage without waiting a turn for it. */
const stages = new Map<string, Stage | Promise<Stage>>();
// Which of our stages a path resolves to ("" for none): a server asks for every connection,
// and the answer for a given path only changes if someone re-links it under a running server.
const byPath = new Map<string, string>();
// SIGHUP: a path re-linked under the server is looked at again. A stage already loaded stays
// (its code is in memory; a new version of the package takes a restart).
onReload(() => byPath.clear());

/** The stage of `file` (a resolved path) when it is one of our bins, else undefined; the
 * stage itself once it is loaded. */
export function ourStage(file: string): Stage | Promise<Stage> | undefined {
  let name = byPath.get(file);
  if (name === undefined) {
    name = stageName(file);
    byPath.set(file, name);
  }
  const load = name ? STAGES[name] : undefined;
  if (!name || !load) return undefined;
  let stage = stages.get(name);
  if (!stage) {
    const named = name;
    stage = load().then((s) => {
      stages.set(named, s);
      return s;
    });
    stages.set(name, stage);
  }
  return stage;
}

function stageName(file: string): string {
  let real: string;
  try {
    real = realpathSync.native(osPath(file));
  } catch {
    return "";
  }
  // Which program a launcher symlink runs is its name, as for the launcher itself (argv[0]).
  const own = ourLauncher();
  if (!own || real !== own) return "";
  const name = basename(file);
  return STAGES[name] ? name : "";
}
