import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The gateway serves the built app at "/" and the API under "/api/v1" (same origin).
// `npm run dev` proxies the API to a gateway on 127.0.0.1:8000 (started by `make run`).
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 800 },
  server: { proxy: { "/api": { target: "http://127.0.0.1:8000", ws: true } } },
  test: { include: ["src/**/*.test.ts"] },
});
