// Holds N idle connections to 127.0.0.1:PORT from 127.0.0.2 (so rules can tell them apart),
// then listens on READYPORT to say so, and keeps them until killed or LIMIT seconds pass.
import { connect, createServer } from "node:net";

const [port, count, readyPort, limit = "900"] = process.argv.slice(2).map(Number);
const held = [];
const deadline = Date.now() + 60_000;

function open() {
  return new Promise((resolve) => {
    const attempt = () => {
      const s = connect({ port, host: "127.0.0.1", localAddress: "127.0.0.2" });
      s.once("connect", () => resolve(s));
      s.once("error", () => {
        s.destroy();
        if (Date.now() > deadline) process.exit(111);
        setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

for (let i = 0; i < count; i += 50) {
  const batch = await Promise.all(Array.from({ length: Math.min(50, count - i) }, open));
  held.push(...batch);
}
for (const s of held) s.on("error", () => {});
createServer((c) => c.destroy()).listen(readyPort, "127.0.0.1");
setTimeout(() => process.exit(0), limit * 1000).unref?.();
setTimeout(() => process.exit(0), limit * 1000);
