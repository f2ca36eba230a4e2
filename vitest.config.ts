import { defineConfig } from 'vitest/config';

// One run over every package: each package keeps its tests under its own test/ folder,
// cross-backend golden tests live in /test.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
