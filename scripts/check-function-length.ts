/**
 * `npm run check:functions -- [--max <lines>] [<file or directory> ...]`: list every function
 * whose body spans more than `--max` lines (default 100), and exit 1 when there is one (0 when
 * none, 2 on a usage error).
 *
 * Without paths it reads the code that ships: `workers/`, `shared/` and each `packages/<name>/src/`
 * (tests, bench/ and scripts/ are free). It parses each `.ts`/`.mts`/`.cts`/`.tsx` file with the
 * TypeScript compiler API (no type checking) and counts function declarations and expressions,
 * arrow functions, methods, get/set accessors and constructors, each on its own: a factory whose
 * body holds the closures it returns is measured whole, and so is each closure. Declaration
 * files (`.d.ts`), `node_modules/`, `dist/` and `.wrangler/` are skipped.
 *
 * A body's span is the lines from its first character to its last, inclusive: for
 * `function f() {` … `}` that is the line of `{` through the line of `}`; for an arrow whose
 * body is an expression, the expression's lines.
 *
 * Prints one line per function, `file:line  <n> lines  <name>` (line 1-based, the function's
 * own first line; path relative to the working directory), then a summary line.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** Longest body allowed, in lines. */
export const DEFAULT_MAX_LINES = 100;
const SOURCE = /\.(ts|mts|cts|tsx)$/;
const SKIPPED_DIRS = new Set(["node_modules", "dist", ".wrangler"]);

/** A function over the limit. */
export interface LongFunction {
  /** The file as given to `longFunctions`. */
  file: string;
  /** 1-based line where the function (its declaration, not its body) starts. */
  line: number;
  /** Lines its body spans, first and last included. */
  lines: number;
  /** A readable name: `Class.method`, `outer.inner`, `const` name, or `<callee> callback`. */
  name: string;
}

type FunctionLike =
  | ts.FunctionDeclaration
  | ts.FunctionExpression
  | ts.ArrowFunction
  | ts.MethodDeclaration
  | ts.ConstructorDeclaration
  | ts.GetAccessorDeclaration
  | ts.SetAccessorDeclaration;

function isFunctionLike(node: ts.Node): node is FunctionLike {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isFunctionExpression(node) ||
    ts.isArrowFunction(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node)
  );
}

/** The text of a declaration's name (identifier, string, computed key), or undefined. */
function declaredName(name: ts.PropertyName | ts.BindingName | undefined, source: ts.SourceFile): string | undefined {
  if (name === undefined) return undefined;
  if (ts.isIdentifier(name) || ts.isPrivateIdentifier(name) || ts.isStringLiteral(name) || ts.isNumericLiteral(name)) return name.text;
  return name.getText(source);
}

/** The name a node gives the scope it opens (function, class, named holder of an arrow), or undefined. */
function ownName(node: ts.Node, source: ts.SourceFile): string | undefined {
  if (ts.isClassDeclaration(node) || ts.isClassExpression(node)) return node.name?.text ?? "<class>";
  if (ts.isConstructorDeclaration(node)) return "constructor";
  if (
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node)
  ) {
    const name = declaredName(node.name, source) ?? "default";
    return ts.isGetAccessorDeclaration(node) ? `get ${name}` : ts.isSetAccessorDeclaration(node) ? `set ${name}` : name;
  }
  if (ts.isFunctionExpression(node) || ts.isArrowFunction(node)) {
    if (ts.isFunctionExpression(node) && node.name) return node.name.text;
    const parent = node.parent;
    if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) {
      return declaredName(parent.name, source);
    }
    if (ts.isBinaryExpression(parent) && parent.operatorToken.kind === ts.SyntaxKind.EqualsToken) return parent.left.getText(source);
    if (ts.isExportAssignment(parent)) return "default";
    if (ts.isCallExpression(parent) || ts.isNewExpression(parent)) return `${parent.expression.getText(source)} callback`;
    return "<anonymous>";
  }
  return undefined;
}

/** `Outer.inner` for a function: the names of the classes and functions around it, then its own. */
function qualifiedName(node: FunctionLike, source: ts.SourceFile): string {
  const parts: string[] = [ownName(node, source) ?? "<anonymous>"];
  for (let at = node.parent; !ts.isSourceFile(at); at = at.parent) {
    if (isFunctionLike(at) || ts.isClassDeclaration(at) || ts.isClassExpression(at)) parts.unshift(ownName(at, source) ?? "<anonymous>");
  }
  return parts.join(".");
}

/**
 * The functions of one source text whose body spans more than `maxLines` lines.
 * @param file the name reported (and used to pick the parser's dialect by extension)
 * @param text the file's contents
 * @param maxLines the longest body allowed, in lines (default 100)
 * @returns the functions over the limit, in source order
 */
export function longFunctions(file: string, text: string, maxLines = DEFAULT_MAX_LINES): LongFunction[] {
  const kind = file.endsWith(".tsx") ? ts.ScriptKind.TSX : ts.ScriptKind.TS;
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind);
  const lineOf = (pos: number) => source.getLineAndCharacterOfPosition(pos).line;
  const found: LongFunction[] = [];
  const visit = (node: ts.Node): void => {
    if (isFunctionLike(node) && node.body) {
      const lines = lineOf(node.body.getEnd()) - lineOf(node.body.getStart(source)) + 1;
      if (lines > maxLines) found.push({ file, line: lineOf(node.getStart(source)) + 1, lines, name: qualifiedName(node, source) });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Every source file under `path` (a file is itself), sorted; skips `.d.ts`, node_modules/, dist/, .wrangler/. */
export function sourceFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const out: string[] = [];
  for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) out.push(...sourceFiles(full));
    } else if (SOURCE.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      out.push(full);
    }
  }
  return out;
}

/** The default roots: workers/, shared/ and each packages/<name>/src/ that exists. */
function defaultRoots(): string[] {
  const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();
  const packages = join(ROOT, "packages");
  const sources = isDir(packages)
    ? readdirSync(packages)
        .sort()
        .map((name) => join(packages, name, "src"))
    : [];
  return [join(ROOT, "workers"), join(ROOT, "shared"), ...sources].filter(isDir);
}

/**
 * The command: parse arguments, check the files, print the report.
 * @param argv the arguments after the script's name
 * @returns the exit code: 0 none over the limit, 1 some, 2 a usage error
 */
export function main(argv: string[]): number {
  let max = DEFAULT_MAX_LINES;
  const paths: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--max") {
      const value = argv[++i];
      max = Number(value);
      if (!Number.isInteger(max) || max < 1) {
        console.error(`check:functions: --max wants a whole number of lines ≥ 1, got ${JSON.stringify(value)}`);
        return 2;
      }
    } else if (arg.startsWith("-")) {
      console.error(`check:functions: unknown option ${arg} (usage: check-function-length.ts [--max <lines>] [<file or directory> ...])`);
      return 2;
    } else {
      paths.push(resolve(arg));
    }
  }
  const roots = paths.length > 0 ? paths : defaultRoots();
  let files: string[];
  try {
    files = roots.flatMap(sourceFiles);
  } catch (err) {
    console.error(`check:functions: ${(err as Error).message}`);
    return 2;
  }
  const long = files.flatMap((f) => longFunctions(relative(process.cwd(), f), readFileSync(f, "utf8"), max));
  for (const f of long) console.log(`${f.file}:${f.line}  ${f.lines} lines  ${f.name}`);
  if (long.length === 0) {
    console.log(`check:functions: no function body over ${max} lines in ${files.length} ${files.length === 1 ? "file" : "files"}`);
    return 0;
  }
  console.log(
    `check:functions: ${long.length} function ${long.length === 1 ? "body" : "bodies"} over ${max} lines in ${files.length} files: split them`,
  );
  return 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
