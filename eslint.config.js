// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Everything that would make the Raft core impure: IO, time, timers, randomness, promises. */
const coreImpurity = {
  files: ['packages/raft/src/core/**/*.ts'],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          { group: ['node:*'], message: 'core is pure: no Node.js modules (IO belongs to the driver).' },
          {
            group: [
              'fs',
              'fs/*',
              'net',
              'dgram',
              'http',
              'https',
              'http2',
              'child_process',
              'worker_threads',
              'timers',
              'timers/*',
              'crypto',
              'os',
              'level',
              'classic-level',
              '@grpc/*',
            ],
            message: 'core is pure: no IO modules.',
          },
        ],
      },
    ],
    'no-restricted-globals': [
      'error',
      ...[
        'setTimeout',
        'setInterval',
        'setImmediate',
        'clearTimeout',
        'clearInterval',
        'clearImmediate',
        'queueMicrotask',
        'process',
        'performance',
        'fetch',
        'require',
      ].map((name) => ({
        name,
        message: 'core is pure: time, timers and IO are injected by the driver.',
      })),
    ],
    'no-restricted-properties': [
      'error',
      { object: 'Math', property: 'random', message: 'core is deterministic: use the injected random source.' },
      { object: 'Date', property: 'now', message: 'core has no clock: time arrives as tick().' },
    ],
    'no-restricted-syntax': [
      'error',
      { selector: 'NewExpression[callee.name="Date"]', message: 'core has no clock.' },
      { selector: 'NewExpression[callee.name="Promise"]', message: 'core is synchronous.' },
      { selector: ':function[async=true]', message: 'core is synchronous.' },
      { selector: 'AwaitExpression', message: 'core is synchronous.' },
    ],
  },
};

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'data/**', '**/*.d.ts', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        URL: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        queueMicrotask: 'readonly',
        performance: 'readonly',
        structuredClone: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-explicit-any': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  coreImpurity,
);
