// Lint holds the architecture: only cli.ts files may touch process globals (DESIGN.md section 3).
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "build/", "node_modules/", "bench/results/", "coverage/"] },
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["src/**/*.ts"],
    ignores: ["src/**/cli.ts", "src/cli/main.ts", "src/cli/stdio.ts", "src/cli/main-stage.ts"],
    rules: {
      "no-restricted-properties": [
        "error",
        { object: "process", property: "env", message: "stages get their env passed in" },
        { object: "process", property: "exit", message: "return a status; only cli.ts exits" },
        { object: "process", property: "stdin", message: "stages get a Connection" },
        { object: "process", property: "stdout", message: "stages get a Connection" },
        { object: "process", property: "argv", message: "stages get their argv passed in" },
      ],
    },
  },
);
