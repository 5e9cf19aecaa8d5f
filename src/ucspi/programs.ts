// Which programs are ours, and how to load each one's stage for the in-process chain.
import { realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Stage } from "./stage.ts";

type StageLoader = () => Promise<Stage>;

// Only programs that work on a connection are stages; tcprules and friends are not.
const STAGES: Record<string, StageLoader> = {
  "ucspi-demo": async () => (await import("../ucspi-demo/stage.ts")).demoStage,
};

let binDir: string | undefined;

/** The real path of this package's bin/ folder (the bundle sits in dist/ or dist/chunks/). */
export function ourBinDir(): string {
  if (binDir) return binDir;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      binDir = realpathSync.native(join(dir, "bin"));
      return binDir;
    } catch {
      dir = dirname(dir);
    }
  }
  binDir = "";
  return binDir;
}

const stages = new Map<string, Promise<Stage>>();
// Which of our stages a path resolves to ("" for none): a server asks for every connection,
// and the answer for a given path only changes if someone re-links it under a running server.
const byPath = new Map<string, string>();

/** The stage of `file` (a resolved path) when it is one of our bins, else undefined. */
export function ourStage(file: string): Promise<Stage> | undefined {
  let name = byPath.get(file);
  if (name === undefined) {
    name = stageName(file);
    byPath.set(file, name);
  }
  const load = name ? STAGES[name] : undefined;
  if (!name || !load) return undefined;
  let stage = stages.get(name);
  if (!stage) {
    stage = load();
    stages.set(name, stage);
  }
  return stage;
}

function stageName(file: string): string {
  let real: string;
  try {
    real = realpathSync.native(file);
  } catch {
    return "";
  }
  const bin = ourBinDir();
  if (!bin || dirname(real) !== bin) return "";
  const name = real.slice(bin.length + 1);
  return STAGES[name] ? name : "";
}
