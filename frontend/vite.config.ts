// Vite 6 (not 7 or 8, which need Node 20.19+): Debian bookworm's own Node.js is 18, and
// scripts/services.sh installs that one where Node.js is missing.
// Builds the dashboard into dist/ with fixed names (index.html, app.js, app.css): the server
// embeds those three files (src/web/spa.rs), and CI rebuilds them to check they match the sources.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  base: '/',
  // Preact's automatic JSX runtime, without a framework plugin.
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: false,
    reportCompressedSize: true,
    rollupOptions: {
      output: {
        entryFileNames: 'app.js',
        assetFileNames: 'app[extname]',
        inlineDynamicImports: true,
      },
    },
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8080', '/auth': 'http://127.0.0.1:8080', '/events': 'http://127.0.0.1:8080', '/send-messages': 'http://127.0.0.1:8080', '/cache': 'http://127.0.0.1:8080' } },
  test: { environment: 'node', include: ['src/**/*.test.ts'] },
});
