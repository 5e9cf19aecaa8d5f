// Holds N idle connections to 127.0.0.1:PORT from 127.0.0.2 (so rules can tell them apart),
// then listens on READYPORT to say so, and keeps them until killed or LIMIT seconds pass.
// With "tls" as the fifth argument each one completes a TLS handshake first.
import { connect, createServer } from "node:net";
import { connect as tlsConnect } from "node:tls";

const [port, count, readyPort, limit = 900] = process.argv.slice(2, 6).map(Number);
const tls = process.argv[6] === "tls";
const held = [];
const deadline = Date.now() + 60_000;

function open() {
  return new Promise((resolve) => {
    const attempt = () => {
      const options = { port, host: "127.0.0.1", localAddress: "127.0.0.2" };
      const s = tls ? tlsConnect({ ...options, rejectUnauthorized: false }) : connect(options);
      s.once(tls ? "secureConnect" : "connect", () => resolve(s));
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
