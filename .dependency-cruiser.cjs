/**
 * What may import what (`npm run check:imports`; docs/contributing.md has the table).
 * Rules are path patterns, so they hold as files move into the folders they name.
 * Tests, bench/ and scripts/ are free, except that no cycle is allowed anywhere.
 * Type-only imports count (`tsPreCompilationDeps`): a layer that needs another's types depends on it.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "No import cycle, anywhere: a cycle means two modules are one module split in two files.",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-unresolvable",
      severity: "error",
      comment: "Every import resolves (a relative `.ts` specifier names an existing file): else the other rules would not see it.",
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: "packages-import-only-wire",
      severity: "error",
      comment:
        "The published agent packages (packages/*/src) import npm packages, Node built-ins, each other and shared/wire/ only: never workers/, never the gateway's signing or admission code in the rest of shared/.",
      from: { path: "^packages/[^/]+/src/" },
      to: { dependencyTypes: ["local", "localmodule", "aliased"], pathNot: "^(packages/[^/]+/src|shared/wire)/" },
    },
    {
      name: "wire-imports-only-wire",
      severity: "error",
      comment:
        "shared/wire/ is what the agent packages may import, so it imports only itself (and npm packages): else a package would reach the rest of shared/ through it.",
      from: { path: "^shared/wire/" },
      to: { dependencyTypes: ["local", "localmodule", "aliased"], pathNot: "^shared/wire/" },
    },
    {
      name: "shared-imports-neither-side",
      severity: "error",
      comment: "shared/ runs anywhere: it imports neither the Worker (workers/) nor the agent packages (packages/).",
      from: { path: "^shared/" },
      to: { path: "^(workers|packages)/" },
    },
    {
      name: "schemes-import-the-contract",
      severity: "error",
      comment:
        "A payment scheme knows the gateway only through its contract (workers/schemes/contract.ts): never the Durable Objects (workers/objects/) nor the request pipeline (workers/pipeline/).",
      from: { path: "^workers/schemes/" },
      to: { path: "^workers/(objects|pipeline)/" },
    },
  ],
  options: {
    doNotFollow: { path: "(^|/)node_modules/" },
    exclude: { path: "(^|/)(node_modules|dist|\\.wrangler)/|\\.d\\.ts$" },
    // modules the Workers runtime and its vitest pool provide
    builtInModules: { add: ["cloudflare:workers", "cloudflare:test", "cloudflare:sockets", "cloudflare:email"] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "workerd", "default", "types"],
      mainFields: ["module", "main", "types", "typings"],
      extensions: [".ts", ".js", ".mjs", ".cjs", ".json", ".d.ts"],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
