import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

// The console is served by the gateway under /app/ (the API lives at the root of the same
// origin), so every asset URL is built relative to that base. Nothing is loaded from another
// origin: tables run on machines without internet access.
//
// `DLAB_API` (dev server and preview only) names a gateway to forward the API and the WebSocket
// to, so the app can be worked on with `npm run dev` against a running local gateway.
const api = process.env.DLAB_API;
const apiPaths = '^/(campaigns|sessions|compendium|connect-ticket|dev|lan|healthz)(/|\\?|$)';
const proxy = api
  ? {
      [apiPaths]: { target: api, changeOrigin: false },
      '^/\\?token=': { target: api.replace(/^http/, 'ws'), ws: true, changeOrigin: false },
    }
  : undefined;

export default defineConfig({
  base: '/app/',
  plugins: [vue()],
  build: {
    outDir: 'dist',
    target: 'es2020',
    sourcemap: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
  server: { proxy },
  preview: { proxy },
});
