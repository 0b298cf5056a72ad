// One ES-module bundle serves both homes of the UI:
//  - standalone: public/index.html (copied next to it) loads it at /ui/;
//  - inside Airflow: the react_apps loader import()s it from /aml/ui/aml-ui.js and renders
//    globalThis.AirflowPlugin (src/main.tsx). The bundle carries its own React and mounts its own
//    root, so it does not depend on which React version the host UI ships.
import react from "@vitejs/plugin-react";
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  // Library mode does not replace process.env.NODE_ENV (React reads it): production React.
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: resolve(__dirname, "..", "airflow_aml", "service", "ui_static"),
    emptyOutDir: true,
    copyPublicDir: true,
    chunkSizeWarningLimit: 600,
    lib: {
      entry: resolve(__dirname, "src", "main.tsx"),
      formats: ["es"],
      fileName: () => "aml-ui.js",
    },
  },
});
