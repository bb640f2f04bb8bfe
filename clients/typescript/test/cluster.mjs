// A real cluster for the tests: `canistry up --port 0` in a temp dir, as a child process.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const PYTHON = process.env.PYTHON ?? "python3";

/** The sample pack's units with their answers (the API never sends answers). */
export function samplePack() {
  return JSON.parse(readFileSync(join(REPO, "content_service/packs/sample.json"), "utf8")).units;
}

/**
 * Start `canistry up` and resolve once it prints the gateway's URL.
 * Returns { url, stop }; stop() sends SIGINT (the whole cluster stops) and waits.
 */
export async function startCluster({ corsOrigins = [], extraArgs = [], timeoutMs = 120_000 } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "canistry-ts-"));
  const args = ["-m", "canistry", "up", "--port", "0", "--data-dir", dataDir, "--workers", "1"];
  for (const origin of corsOrigins) args.push("--cors-origin", origin);
  args.push(...extraArgs);
  const child = spawn(PYTHON, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  // Should this runner die before its after() hook, the cluster still gets SIGTERM and stops.
  const orphanGuard = () => child.kill("SIGTERM");
  process.once("exit", orphanGuard);
  let output = "";
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`canistry up did not print its URL:\n${output}`)), timeoutMs);
    const read = (chunk) => {
      output += chunk;
      const match = /the gateway is at (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.setEncoding("utf8").on("data", read);
    child.stderr.setEncoding("utf8").on("data", read);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`canistry up exited (${code}):\n${output}`));
    });
  });
  const stop = async () => {
    process.off("exit", orphanGuard);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGINT");
      const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { url, stop, output: () => output };
}
